"""Operator workflows on a registered model: calibrate, evaluate, promote."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamvae.bundle import Detector, ModelBundle
from streamvae.config import TrackingSettings
from streamvae.data import Table, load_table
from streamvae.errors import DataError, ModelLoadError
from streamvae.scoring import DetectionReport, detection_report
from streamvae.thresholds import Threshold
from streamvae.tracking import (
    ResolvedModel,
    configure,
    load_resolved,
    record_threshold,
    resolve,
    set_alias,
)
from streamvae.types import ModelRef
from streamvae.workflows.train import calibrate_scores


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A resolved model and its bundle (threshold included)."""

    ref: ModelRef
    bundle: ModelBundle


def _load(uri: str, tracking: TrackingSettings, tmp: Path) -> tuple[LoadedModel, ResolvedModel]:
    configure(tracking)
    resolved = resolve(uri, tmp)
    return LoadedModel(resolved.ref, load_resolved(resolved)), resolved


def _table_for(bundle: ModelBundle, path: str | Path, label_column: str) -> Table:
    """The model's feature columns of ``path``, in schema order, all finite."""
    names = bundle.preprocess.schema.names
    table = load_table(path, label_column=label_column, feature_columns=names)
    bad = ~np.isfinite(table.features)
    if bad.any():
        columns = [names[i] for i in np.flatnonzero(bad.any(axis=0))]
        msg = f"{str(path)!r}: {int(bad.any(axis=1).sum())} row(s) hold NaN or Inf in {columns[:5]}"
        raise DataError(msg)
    return table


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    """A calibrated threshold and what it means for normal traffic."""

    model: ModelRef
    threshold: Threshold
    n_anomalies_ignored: int
    recorded: bool

    @property
    def alerts_per_1000(self) -> float:
        """Expected alerts per 1,000 normal records (nominal rate)."""
        return 1000.0 * self.threshold.expected_alert_rate


def calibrate(
    uri: str,
    data: str | Path,
    percentile: float,
    *,
    tracking: TrackingSettings,
    critical_percentile: float | None = None,
    label_column: str = "label",
    record: bool = True,
) -> CalibrationResult:
    """Calibrate ``uri`` at ``percentile`` of its scores on the normal rows of ``data``.

    Rows labelled 1 are left out (calibration is on normal data). Unless ``record`` is
    false, the threshold is stored with this exact model version.

    Raises:
        ConfigError, DataError, ModelLoadError: bad percentile, data or model.
    """
    with tempfile.TemporaryDirectory() as tmp:
        loaded, resolved = _load(uri, tracking, Path(tmp))
        table = _table_for(loaded.bundle, data, label_column)
        normals = table.normal_only()
        detector = Detector(loaded.bundle)
        scores = detector.select(detector.score(normals.features))
        threshold = calibrate_scores(
            scores, percentile, critical_percentile, loaded.bundle.score_kind
        ).for_model(loaded.ref.name, loaded.ref.version)
        if record:
            threshold = record_threshold(resolved, threshold)
    return CalibrationResult(loaded.ref, threshold, len(table) - len(normals), record)


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """Detection quality of a model on labelled data."""

    model: ModelRef
    threshold: Threshold
    report: DetectionReport


def evaluate(
    uri: str, data: str | Path, *, tracking: TrackingSettings, label_column: str = "label"
) -> EvaluationResult:
    """Score labelled ``data`` with ``uri`` and report AUROC, AP, precision/recall/F1.

    Raises:
        DataError: the data has no labels.
        NotCalibratedError: the model has no threshold.
    """
    with tempfile.TemporaryDirectory() as tmp:
        loaded, _ = _load(uri, tracking, Path(tmp))
        table = _table_for(loaded.bundle, data, label_column)
        if table.labels is None:
            msg = f"{str(data)!r} has no labels (column {label_column!r}, or 'y' in an .npz)"
            raise DataError(msg)
        detector = Detector(loaded.bundle)
        threshold = detector.threshold
        scores = detector.select(detector.score(table.features))
    report = detection_report(table.labels, scores, threshold.value)
    return EvaluationResult(loaded.ref, threshold, report)


def promote(uri: str, alias: str, *, tracking: TrackingSettings) -> ModelRef:
    """Point ``models:/NAME@alias`` at the registered version behind ``uri``.

    Refuses a version without a calibrated threshold: the service would not serve it.

    Raises:
        ModelLoadError: not a registered model, or not calibrated.
    """
    if not uri.startswith("models:/"):
        msg = f"promote needs a registered model URI (models:/NAME/VERSION), got {uri!r}"
        raise ModelLoadError(msg)
    with tempfile.TemporaryDirectory() as tmp:
        loaded, _ = _load(uri, tracking, Path(tmp))
    if loaded.bundle.threshold is None:
        msg = f"{uri} has no calibrated threshold: run `streamvae calibrate {uri} DATA` first"
        raise ModelLoadError(msg)
    set_alias(loaded.ref.name, alias, loaded.ref.version)
    return ModelRef(
        loaded.ref.name, loaded.ref.version, alias, f"models:/{loaded.ref.name}@{alias}"
    )
