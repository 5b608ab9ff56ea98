"""Data: loaders, feature schema and scaler, splits."""

from __future__ import annotations

from streamvae.data.loaders import Table, load_builtin, load_column, load_table
from streamvae.data.schema import FeatureSchema, StandardScaler, finite_rows
from streamvae.data.splits import NoveltySplit, novelty_split, shuffled, split_fraction

__all__ = [
    "FeatureSchema",
    "NoveltySplit",
    "StandardScaler",
    "Table",
    "finite_rows",
    "load_builtin",
    "load_column",
    "load_table",
    "novelty_split",
    "shuffled",
    "split_fraction",
]
