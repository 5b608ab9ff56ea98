"""One MLflow run per training, for every input kind: log, register, record the calibration.

Each input kind's workflow supplies only its training step (settings -> :class:`Trained`);
this module owns the run around it, so every kind's registered versions carry the same
records: parameters, per-epoch metrics, the threshold's metrics, the bundle as a pyfunc
model, the calibration report, and the calibration recorded on the version (the thresholds
``calibrate`` and ``serve`` read back).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import numpy.typing as npt

from streamvae.config import TrackingSettings
from streamvae.reports import CalibrationReport, report_stem, threshold_facts
from streamvae.thresholds import ThresholdSet
from streamvae.tracking.resolve import record_for_version
from streamvae.tracking.store import (
    MlflowCallback,
    configure,
    ensure_experiment,
    log_bundle,
    publish_report,
    set_alias,
    tracked_run,
)

if TYPE_CHECKING:  # pragma: no cover - torch loads only when training runs
    from mlflow.models import ModelSignature

    from streamvae.bundle import ModelBundle
    from streamvae.training import FitResult, TrainingCallback


@dataclass(frozen=True, slots=True)
class Trained:
    """What an input kind's training step hands to the run.

    Attributes:
        bundle: the trained (and, when there was held-out data, calibrated) bundle.
        n_train: rows, windows or images trained on.
        n_calibration: those the thresholds were calibrated on.
        fit: the training loop's result, when the caller wants to show it.
        metrics: more figures to log (e.g. diagnostics of the held-out normals).
        anomaly_scores: scores of labelled anomalies to draw in the calibration report.
    """

    bundle: ModelBundle
    n_train: int
    n_calibration: int
    fit: FitResult | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    anomaly_scores: npt.NDArray[np.float64] | None = None


@dataclass(frozen=True, slots=True)
class TrainOutcome:
    """What a training command did, whatever the input kind.

    ``bundle.threshold`` is the calibration as recorded on the registered version (bound to
    its name and version), or ``None`` when nothing was held out to calibrate on.
    """

    run_id: str
    model_uri: str
    registered_model: str | None
    version: str | None
    alias: str | None
    bundle: ModelBundle
    n_train: int
    n_calibration: int
    seconds: float
    tracking_uri: str
    report: str | None = None  # where the calibration report's PNG is (path or artifact URI)
    fit: FitResult | None = None

    @property
    def threshold(self) -> ThresholdSet | None:
        """The thresholds the version serves with."""
        return self.bundle.threshold


def train_in_run(
    train: Callable[[list[TrainingCallback]], Trained],
    params: Mapping[str, Any],
    tracking: TrackingSettings,
    callbacks: list[TrainingCallback] | None = None,
    *,
    signature: ModelSignature | None = None,
    input_example: Any = None,
) -> TrainOutcome:
    """Run ``train`` inside an MLflow run, log and register the bundle, set the alias.

    ``train`` receives the callbacks to pass to ``fit`` (MLflow's per-epoch logging first,
    then ``callbacks``). ``signature`` and ``input_example`` describe the pyfunc's input.
    """
    from streamvae.bundle import save_bundle

    started = time.monotonic()
    uri = configure(tracking)
    experiment_id = ensure_experiment(tracking)
    with tracked_run(experiment_id) as run:
        mlflow.log_params(dict(params))
        trained = train([MlflowCallback(), *(callbacks or [])])
        bundle, thresholds = trained.bundle, trained.bundle.threshold
        mlflow.log_metrics(_run_metrics(trained))
        with tempfile.TemporaryDirectory() as tmp:
            bundle_dir = save_bundle(bundle, Path(tmp) / "bundle")
            model_uri, version = log_bundle(
                bundle_dir, tracking.registered_model, signature=signature,
                input_example=input_example,
            )  # fmt: skip
        report = None
        if thresholds is not None:
            report = _report(thresholds, trained.anomaly_scores, tracking, version)
    name, alias = tracking.registered_model, tracking.alias
    if version is not None and name is not None:
        if thresholds is not None:
            bundle = replace(
                bundle, threshold=record_for_version(name, version, run.info.run_id, thresholds)
            )
        if alias:
            set_alias(name, alias, version)
    return TrainOutcome(
        run_id=run.info.run_id, model_uri=model_uri, registered_model=name, version=version,
        alias=alias if version else None, bundle=bundle, n_train=trained.n_train,
        n_calibration=trained.n_calibration, seconds=time.monotonic() - started,
        tracking_uri=uri, report=report, fit=trained.fit,
    )  # fmt: skip


def _run_metrics(trained: Trained) -> dict[str, float]:
    """The threshold's figures, the best epoch's metrics and the kind's own."""
    metrics: dict[str, float] = {}
    thresholds = trained.bundle.threshold
    if thresholds is not None:
        metrics["threshold"] = thresholds.default.value
        metrics["threshold_segments"] = float(len(thresholds.segments))
        metrics["calibration_alert_rate"] = thresholds.default.empirical_alert_rate
    if trained.fit is not None and trained.fit.history:
        metrics |= {f"best_{k}": v for k, v in trained.fit.best_metrics.items()}
    return metrics | dict(trained.metrics)


def _report(
    thresholds: ThresholdSet,
    anomalies: npt.NDArray[np.float64] | None,
    tracking: TrackingSettings,
    version: str | None,
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
        threshold=default, normal_scores=scores, anomaly_scores=anomalies, facts=facts,
    )  # fmt: skip
    return publish_report(report, tracking, report_stem(name, version or ""))
