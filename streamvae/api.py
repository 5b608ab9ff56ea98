"""The Python API: load a model version and score, predict, explain; train like the CLI.

Example (see the README's "Python API" section for one that runs)::

    import streamvae
    model = streamvae.load("models:/fraud@champion")
    model.predict(frame)   # 0/1 per row, by the version's threshold
    model.decide(frame)    # score, threshold, p-value, severity...

A loaded model applies the thresholds ``streamvae calibrate`` recorded for its version (the
ones the service, ``streamvae score`` and the MLflow pyfunc apply), so every path gives the
same verdicts. Data is a polars or pandas DataFrame with the model's feature columns (by
name; other columns are ignored), or an ``(n, d)`` array in the model's feature order.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from streamvae.bundle import ModelBundle, TabularDetector
from streamvae.config import TrackingSettings, TrainSettings, load_settings
from streamvae.data.loaders import table_from_frame
from streamvae.errors import DataError
from streamvae.thresholds import ThresholdSet
from streamvae.tracking import TrainOutcome, load_resolved, resolve
from streamvae.tracking import configure as configure_tracking
from streamvae.types import ModelRef
from streamvae.workflows.score import decide_frame, tabular_bundle
from streamvae.workflows.train import train

Data = Any
"""A polars or pandas DataFrame with the feature columns, or an (n, d) array."""


def _frame(data: Data, names: Sequence[str]) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, np.ndarray):
        matrix = np.atleast_2d(data)
        names = names or [f"f{i:02d}" for i in range(matrix.shape[1] if matrix.ndim == 2 else 0)]
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            msg = f"expected an (n, {len(names)}) array in feature order, got shape {data.shape}"
            raise DataError(msg)
        return pl.DataFrame(matrix.astype(np.float64), schema=list(names), orient="row")
    if type(data).__module__.startswith("pandas"):
        return pl.from_pandas(data)
    msg = f"expected a polars or pandas DataFrame or a numpy array, got {type(data).__name__}"
    raise DataError(msg)


@dataclass(frozen=True)
class Model:
    """A model version with the thresholds in force for it.

    Attributes:
        ref: name, version and alias of the model.
        bundle: the trained bundle (network, scaler, score kind, thresholds).
    """

    ref: ModelRef
    bundle: ModelBundle

    @property
    def detector(self) -> TabularDetector:
        """The scoring engine (tabular models)."""
        return TabularDetector(self.bundle)

    @property
    def thresholds(self) -> ThresholdSet:
        """The thresholds in force (raises ``NotCalibratedError`` without any)."""
        return self.detector.threshold

    @property
    def features(self) -> tuple[str, ...]:
        """The feature columns the model reads, in order."""
        return tabular_bundle(self.bundle).schema.names

    def decide(self, data: Data, *, top_features: int = 3) -> pl.DataFrame:
        """The verdict of each row, one output row per input row.

        Columns ``score, threshold, p_value, severity, is_anomaly``, the ``segment`` when
        thresholds are segmented, the top features (``top1_feature, top1_value,
        top1_expected, top1_share``...) and ``error`` (rows with a missing or non-finite
        feature are not scored).
        """
        frame = _frame(data, self.features)
        return decide_frame(self.detector, self.thresholds, frame, top_features=top_features)

    def score(self, data: Data) -> npt.NDArray[np.float64]:
        """The anomaly score of each row (the model's score kind; higher is more unusual)."""
        return self.decide(data, top_features=0)["score"].to_numpy()

    def predict(self, data: Data) -> npt.NDArray[np.int8]:
        """1 where a row's score is over its threshold, else 0 (unscored rows: 0)."""
        flagged = self.decide(data, top_features=0)["is_anomaly"].fill_null(False)
        return flagged.to_numpy().astype(np.int8)

    def p_values(self, data: Data) -> npt.NDArray[np.float64]:
        """Conformal p-value of each row among the normal calibration scores."""
        return self.decide(data, top_features=0)["p_value"].to_numpy()

    def explain(self, data: Data, top_features: int = 3) -> list[list[dict[str, Any]]]:
        """Per row, the features with the largest share of its reconstruction error.

        Each is ``feature``, observed ``value``, ``expected`` value and ``contribution``.
        """
        decided = self.decide(data, top_features=top_features)
        out = []
        for row in decided.iter_rows(named=True):
            out.append([
                {
                    "feature": row[f"top{k}_feature"],
                    "value": row[f"top{k}_value"],
                    "expected": row[f"top{k}_expected"],
                    "contribution": row[f"top{k}_share"],
                }
                for k in range(1, top_features + 1)
                if row[f"top{k}_feature"] is not None
            ])  # fmt: skip
        return out


def load(uri: str, *, tracking_uri: str | None = None) -> Model:
    """Load ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/ID`` or a bundle folder.

    Args:
        uri: the model.
        tracking_uri: the MLflow store (default: ``MLFLOW_TRACKING_URI``, else the local
            SQLite store under ``.streamvae``, as the CLI).

    Raises:
        ModelLoadError: unknown model, unreadable bundle, thresholds of another version.
    """
    configure_tracking(TrackingSettings(tracking_uri=tracking_uri))
    with tempfile.TemporaryDirectory() as tmp:
        resolved = resolve(uri, Path(tmp))
        return Model(resolved.ref, load_resolved(resolved))


def fit(
    data: Data | str | Path,
    config: str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
) -> TrainOutcome:
    """Train, calibrate, log and register as ``streamvae train`` does.

    Args:
        data: a CSV / Parquet / NPZ path, or a DataFrame (a ``label`` column, if any, marks
            anomalies, left out of training).
        config: a YAML config (default: the built-in defaults, as ``configs/tabular.yaml``).
        overrides: ``section.key=value`` settings, as ``--set`` on the command line.

    Raises:
        ConfigError, DataError: bad settings or data.
    """
    if isinstance(data, str | Path):
        extra = {"data": {"path": str(data), "builtin": None}}
        return train(load_settings(TrainSettings, config, list(overrides), extra=extra))
    settings = load_settings(TrainSettings, config, list(overrides))
    frame = _frame(data, ())
    d = settings.data
    table = table_from_frame(
        frame,
        "data",
        label_column=d.label_column,
        feature_columns=None if d.feature_columns is None else tuple(d.feature_columns),
        context_columns=tuple(d.context_columns + d.categorical_columns),
    )
    return train(settings, table=table)
