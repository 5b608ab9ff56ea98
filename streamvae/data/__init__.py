"""Data: loaders, feature schema and scaler, splits."""

from __future__ import annotations

from streamvae.data.context import context_matrix, fit_context
from streamvae.data.loaders import Table, load_builtin, load_column, load_table
from streamvae.data.schema import ContextSchema, FeatureSchema, StandardScaler, finite_rows
from streamvae.data.splits import NoveltySplit, novelty_split, shuffled, split_fraction

__all__ = [
    "ContextSchema",
    "FeatureSchema",
    "NoveltySplit",
    "StandardScaler",
    "Table",
    "context_matrix",
    "finite_rows",
    "fit_context",
    "load_builtin",
    "load_column",
    "load_table",
    "novelty_split",
    "shuffled",
    "split_fraction",
]
