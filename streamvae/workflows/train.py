"""Offline workflows: train (+ calibrate on held-out normals), calibrate, evaluate, promote."""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np

from streamvae.bundle import Detector, ModelBundle, TabularPreprocess, save_bundle
from streamvae.config import TrainSettings
from streamvae.data import FeatureSchema, StandardScaler, Table, load_builtin, load_table
from streamvae.data.splits import shuffled, split_fraction
from streamvae.errors import ConfigError, DataError
from streamvae.models import build_model, config_from_dict
from streamvae.thresholds import (
    Threshold,
    calibrate_percentile,
    default_critical_percentile,
    min_calibration_size,
)
from streamvae.tracking import (
    MlflowCallback,
    bind_threshold,
    configure,
    ensure_experiment,
    flatten,
    log_bundle,
    set_alias,
)
from streamvae.training import FitResult, TrainConfig, TrainingCallback, fit
from streamvae.types import ScoreKind

logger = logging.getLogger(__name__)


def utc_now() -> str:
    """ISO-8601 UTC time stamp (seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class TrainOutcome:
    """What ``train`` produced."""

    run_id: str
    model_uri: str
    registered_model: str | None
    version: str | None
    alias: str | None
    threshold: Threshold | None
    fit: FitResult
    n_train: int
    n_calibration: int
    seconds: float
    tracking_uri: str


def load_training_table(settings: TrainSettings) -> Table:
    """The table named by ``data.path`` or ``data.builtin``.

    Raises:
        ConfigError: neither or both given.
    """
    data = settings.data
    if (data.path is None) == (data.builtin is None):
        msg = "set exactly one of data.path (a CSV/Parquet/NPZ file) or data.builtin (e.g. cardio)"
        raise ConfigError(msg)
    if data.builtin is not None:
        return load_builtin(data.builtin)
    return load_table(
        data.path or "", label_column=data.label_column, feature_columns=data.feature_columns
    )


def calibrate_scores(
    scores: np.ndarray, percentile: float, critical: float | None, kind: ScoreKind
) -> Threshold:
    """Percentile threshold with a default tenfold-rarer critical level when data allow it."""
    if critical is None:
        critical = default_critical_percentile(percentile, scores.size)
    try:
        return calibrate_percentile(
            scores, percentile, score_kind=kind, critical_percentile=critical, created_at=utc_now()
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _check_calibration_size(n_calibration: int, percentile: float) -> None:
    """Fail before training, not after, when the held-out normals cannot support the percentile."""
    needed = min_calibration_size(percentile)
    if 0 < n_calibration < needed:
        msg = (
            f"calibration percentile {percentile} needs at least {needed} held-out normal rows, "
            f"but data.calibration_fraction leaves {n_calibration}: raise it, lower the "
            "percentile, or set data.calibration_fraction=0 and run `streamvae calibrate` later"
        )
        raise ConfigError(msg)


def build_bundle(settings: TrainSettings, table: Table, callbacks: list[TrainingCallback]) -> tuple[
    ModelBundle, FitResult, np.ndarray
]:  # fmt: skip
    """Fit scaler and model on the normal training rows; returns bundle, fit, calibration rows."""
    normals = table.normal_only() if settings.data.normal_only else table
    if len(normals) < 10:
        msg = f"need at least 10 normal training rows, got {len(normals)}"
        raise DataError(msg)
    order = shuffled(len(normals), settings.data.seed)
    train_idx, cal_idx = split_fraction(order, settings.data.calibration_fraction)
    _check_calibration_size(len(cal_idx), settings.calibration.percentile)
    x_train = normals.features[np.sort(train_idx)]
    if not np.isfinite(x_train).all():
        msg = "training data holds NaN or infinite values"
        raise DataError(msg)
    scaler = StandardScaler.fit(x_train)
    m = settings.model
    try:
        values = m.model_dump(exclude={"name", "score_kind"}) | {"input_dim": x_train.shape[1]}
        model_config = config_from_dict(m.name, values)
        train_config = TrainConfig(**settings.training.model_dump())
    except (KeyError, ValueError) as exc:
        raise ConfigError(str(exc).strip("'\"")) from exc
    model, result = fit(
        lambda: build_model(m.name, model_config),
        scaler.transform(x_train),
        train_config,
        callbacks,
    )
    bundle = ModelBundle(
        model_key=m.name,
        model_config=asdict(model_config),
        state_dict=model.state_dict(),
        preprocess=TabularPreprocess(FeatureSchema(normals.names), scaler),
        score_kind=m.score_kind,
        meta={"trained_at": utc_now(), "n_train": int(x_train.shape[0]), "device": result.device},
    )
    return bundle, result, normals.features[np.sort(cal_idx)]


def train(
    settings: TrainSettings,
    callbacks: list[TrainingCallback] | None = None,
    table: Table | None = None,
) -> TrainOutcome:
    """Train on normal data, calibrate on the held-out normals, log, register, alias.

    Args:
        settings: what to train and where to track it.
        callbacks: extra progress listeners (MLflow logging is always on).
        table: the data, when the caller already has it (else ``settings.data`` is read).

    Raises:
        ConfigError, DataError: bad settings or data.
    """
    started = time.monotonic()
    table = load_training_table(settings) if table is None else table
    uri = configure(settings.tracking)
    experiment_id = ensure_experiment(settings.tracking)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params(flatten(settings.model_dump(mode="json", exclude={"tracking"})))
        all_callbacks = [MlflowCallback(), *(callbacks or [])]
        bundle, result, x_cal = build_bundle(settings, table, all_callbacks)
        threshold = None
        if x_cal.shape[0]:
            cal_scores = Detector(bundle).select(Detector(bundle).score(x_cal))
            c = settings.calibration
            threshold = calibrate_scores(
                cal_scores, c.percentile, c.critical_percentile, bundle.score_kind
            )
            bundle = bundle.with_threshold(threshold)
            mlflow.log_metrics(
                {
                    "threshold": threshold.value,
                    "calibration_alert_rate": threshold.empirical_alert_rate,
                }
            )
        mlflow.log_metrics({f"best_{k}": v for k, v in result.best_metrics.items()})
        with tempfile.TemporaryDirectory() as tmp:
            bundle_dir = save_bundle(bundle, Path(tmp) / "bundle")
            model_uri, version = log_bundle(bundle_dir, settings.tracking.registered_model)
    name, alias = settings.tracking.registered_model, settings.tracking.alias
    if version is not None and name is not None:
        if threshold is not None:
            threshold = bind_threshold(name, version, threshold)
        if alias:
            set_alias(name, alias, version)
    return TrainOutcome(
        run_id=run.info.run_id, model_uri=model_uri, registered_model=name, version=version,
        alias=alias if version else None, threshold=threshold, fit=result,
        n_train=int(bundle.meta["n_train"]), n_calibration=int(x_cal.shape[0]),
        seconds=time.monotonic() - started, tracking_uri=uri,
    )  # fmt: skip
