"""Train inside an MLflow run, log the bundle as a model version, set its alias."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow

from streamvae.bundle import ModelBundle, save_bundle
from streamvae.config import TrackingSettings
from streamvae.reports import CalibrationReport, report_stem, threshold_facts
from streamvae.thresholds import ThresholdSet
from streamvae.tracking import (
    MlflowCallback,
    configure,
    ensure_experiment,
    log_bundle,
    publish_report,
    set_alias,
    tracked_run,
)
from streamvae.training import TrainingCallback

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.models import ModelSignature


@dataclass(frozen=True, slots=True)
class TrainOutcome:
    """What a ``train-*`` command did."""

    run_id: str
    model_uri: str
    registered_model: str | None
    version: str | None
    alias: str | None
    bundle: ModelBundle
    seconds: float
    tracking_uri: str
    report: str | None = None  # where the calibration report's PNG is (path or artifact URI)


def train_logged(
    train: Callable[[list[TrainingCallback]], ModelBundle],
    params: Mapping[str, Any],
    tracking: TrackingSettings,
    callbacks: list[TrainingCallback] | None = None,
    signature: ModelSignature | None = None,
) -> TrainOutcome:
    """Run ``train`` in an MLflow run (params, per-epoch metrics, threshold), register the bundle.

    ``train`` receives the callbacks to pass to ``fit`` (MLflow logging first); ``signature``
    is the pyfunc's input/output schema, when it has one.
    """
    started = time.monotonic()
    uri = configure(tracking)
    experiment_id = ensure_experiment(tracking)
    with tracked_run(experiment_id) as run:
        mlflow.log_params(dict(params))
        bundle = train([MlflowCallback(), *(callbacks or [])])
        thresholds = bundle.threshold
        if thresholds is not None:
            mlflow.log_metrics(
                {
                    "threshold": thresholds.default.value,
                    "threshold_segments": float(len(thresholds.segments)),
                    "calibration_alert_rate": thresholds.default.empirical_alert_rate,
                }
            )
        with tempfile.TemporaryDirectory() as tmp:
            bundle_dir = save_bundle(bundle, Path(tmp) / "bundle")
            model_uri, version = log_bundle(
                bundle_dir, tracking.registered_model, signature=signature
            )
        report = None if thresholds is None else _report(thresholds, tracking, version)
    name, alias = tracking.registered_model, tracking.alias
    if version is not None and name is not None and alias:
        set_alias(name, alias, version)
    return TrainOutcome(
        run.info.run_id, model_uri, name, version, alias if version else None, bundle,
        time.monotonic() - started, uri, report,
    )  # fmt: skip


def _report(
    thresholds: ThresholdSet, tracking: TrackingSettings, version: str | None
) -> str | None:
    """The calibration report of the default threshold (its kept calibration scores)."""
    scores = thresholds.reference.get("")
    if scores is None or scores.size == 0:
        return None
    default = thresholds.default
    facts = threshold_facts(default)
    if thresholds.segments:
        facts["per-segment thresholds"] = (
            f"{len(thresholds.segments)} by {thresholds.segment_field} (this report: the default)"
        )
    name = tracking.registered_model or ""
    report = CalibrationReport(
        title=f"Calibration of {name or 'model'} v{version or '?'} ({default.score_kind})",
        threshold=default, normal_scores=scores, facts=facts,
    )  # fmt: skip
    return publish_report(report, tracking, report_stem(name, version or ""))
