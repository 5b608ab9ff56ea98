"""Offline workflows: train (+ calibrate on held-out normals), calibrate, evaluate, promote."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from streamvae.bundle import ModelBundle, TabularDetector, TabularPreprocess
from streamvae.bundle.fusion import MIN_REFERENCE_ROWS, reference_rows_message, with_fusion
from streamvae.config import OptimSettings, TrainSettings
from streamvae.data import (
    ContextSchema,
    FeatureSchema,
    StandardScaler,
    Table,
    context_matrix,
    fit_context,
    load_builtin,
    load_table,
)
from streamvae.data.splits import shuffled, split_fraction
from streamvae.errors import ConfigError, DataError
from streamvae.models import config_from_dict, model_spec, with_params
from streamvae.thresholds import (
    CalibrationSpec,
    ThresholdSet,
    calibrate_set,
    min_calibration_size,
    min_size_for_fpr,
)
from streamvae.tracking import Trained, TrainOutcome, feature_signature, flatten, train_in_run
from streamvae.training import BetaSchedule, FitResult, TrainConfig, TrainingCallback
from streamvae.training.distributed import world
from streamvae.types import NEIGHBOUR_SCORE_KINDS, ScoreKind
from streamvae.workflows.fitting import fit_bundle

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

logger = logging.getLogger(__name__)


# model settings that choose how a trained model scores, not what the network is
SCORING_SETTINGS = frozenset({"score_kind", "is_samples", "neighbours", "neighbour_rows"})


def utc_now() -> str:
    """ISO-8601 UTC time stamp (seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


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
        if data.context_columns or data.categorical_columns:
            msg = "context columns need data.path (a CSV or Parquet file), not data.builtin"
            raise ConfigError(msg)
        return load_builtin(data.builtin)
    return load_table(
        data.path or "",
        label_column=data.label_column,
        feature_columns=data.feature_columns,
        context_columns=data.context_columns + data.categorical_columns,
    )


def calibrate_scores(
    scores: np.ndarray,
    spec: CalibrationSpec,
    kind: ScoreKind,
    segments: list[str] | None = None,
) -> tuple[ThresholdSet, dict[str, str]]:
    """Calibrate ``scores`` by ``spec``; a rate the data cannot support is a ``ConfigError``."""
    try:
        return calibrate_set(scores, spec, score_kind=kind, segments=segments, created_at=utc_now())
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def resolve_score_kind(setting: ScoreKind | Literal["auto"], *, conditional: bool) -> ScoreKind:
    """The score a tabular model thresholds (``auto``: ``fused``, or ``neg_elbo`` in context).

    The neighbour distance of the fused score compares features only, so for a model
    conditioned on context it would call a row that is normal in another context normal.

    >>> resolve_score_kind("auto", conditional=False), resolve_score_kind("auto", conditional=True)
    ('fused', 'neg_elbo')
    """
    if setting == "auto":
        return "neg_elbo" if conditional else "fused"
    return setting


AUTO_EPOCHS = 100
"""The epoch limit when ``training.epochs`` is unset (raised on small data by min_steps)."""


def train_config_of(training: OptimSettings) -> TrainConfig:
    """The core :class:`~streamvae.training.TrainConfig` of the training settings.

    ``epochs`` unset is the automatic budget: ``AUTO_EPOCHS``, raised on a small data set
    to reach ``min_steps`` optimiser steps (up to ``max_epochs``); a number is that limit
    exactly (``min_steps`` ignored). Early stopping applies either way.

    Raises:
        ValueError: a setting the core config refuses.
    """
    values = training.model_dump(exclude={"beta_schedule", "epochs"})
    if training.epochs is not None:
        values["min_steps"] = 0
    return TrainConfig(
        **values,
        epochs=AUTO_EPOCHS if training.epochs is None else training.epochs,
        beta_schedule=BetaSchedule(**training.beta_schedule.model_dump()),
    )


def _check_calibration_size(n_calibration: int, spec: CalibrationSpec) -> None:
    """Fail before training, not after, when the held-out normals cannot support the spec."""
    if spec.percentile is not None:
        needed, what = min_calibration_size(spec.percentile), f"percentile {spec.percentile}"
    elif not spec.tail and spec.target_fpr is not None:
        needed, what = (
            min_size_for_fpr(spec.target_fpr),
            f"false-positive rate {spec.target_fpr:.3g}",
        )
    else:
        return
    if 0 < n_calibration < needed:
        msg = (
            f"calibration {what} needs at least {needed} held-out normal rows, "
            f"but data.calibration_fraction leaves {n_calibration}: raise it, lower the "
            "target, or set data.calibration_fraction=0 and run `streamvae calibrate` later"
        )
        raise ConfigError(msg)


def _spec(settings: TrainSettings) -> CalibrationSpec:
    if settings.calibration.segment_field is not None:
        msg = "per-segment thresholds are calibrated with `streamvae calibrate --segment FIELD`"
        raise ConfigError(msg)
    return settings.calibration.spec()


def normals_of(settings: TrainSettings, table: Table) -> Table:
    """The rows training learns from (the normal ones unless ``data.normal_only`` is off)."""
    return table.normal_only() if settings.data.normal_only else table


def _model_values(settings: TrainSettings, input_dim: int, context: ContextSchema | None) -> dict[
    str, Any
]:  # fmt: skip
    """The model family's config values from the settings (and the context's shape)."""
    m = settings.model
    skip = set(SCORING_SETTINGS | {"name", "embedding_dim", "params"})
    values: dict[str, Any] = m.model_dump(exclude=skip) | {"input_dim": input_dim}
    if context is not None:
        values |= {
            "cond_numeric": len(context.numeric),
            "cond_categories": context.cardinalities,
            "embedding_dim": m.embedding_dim,
        }
    return with_params(m.name, values, m.params)


def _context_of(settings: TrainSettings, table: Table, train_rows: np.ndarray) -> tuple[
    ContextSchema | None, StandardScaler | None, np.ndarray | None
]:  # fmt: skip
    """Context schema, numeric scaler and the model condition of the training rows."""
    data = settings.data
    try:
        conditional = model_spec(settings.model.name).conditional
    except KeyError as exc:
        raise ConfigError(str(exc).strip("'\"")) from exc
    has_context = bool(data.context_columns or data.categorical_columns)
    if conditional and not has_context:
        msg = (
            f"model {settings.model.name!r} is conditioned on context: set "
            "data.context_columns and/or data.categorical_columns"
        )
        raise ConfigError(msg)
    if not conditional:
        if has_context:
            msg = (
                f"model {settings.model.name!r} reads no context; use cvae or dcvae, or drop "
                "data.context_columns / data.categorical_columns"
            )
            raise ConfigError(msg)
        return None, None, None
    if table.context is None:  # pragma: no cover - load_training_table adds the columns
        msg = "the training table has no context columns"
        raise DataError(msg)
    frame = table.context[np.sort(train_rows).tolist()]
    schema = fit_context(frame, data.context_columns, data.categorical_columns)
    raw = context_matrix(schema, frame)
    m = len(schema.numeric)
    scaler = StandardScaler.fit(raw[:, :m]) if m else None
    return schema, scaler, raw


def build_bundle(settings: TrainSettings, table: Table, callbacks: list[TrainingCallback]) -> tuple[
    ModelBundle, FitResult, Table
]:  # fmt: skip
    """Fit scaler and model on the normal training rows; returns bundle, fit, calibration rows."""
    normals = normals_of(settings, table)
    if len(normals) < 10:
        msg = f"need at least 10 normal training rows, got {len(normals)}"
        raise DataError(msg)
    order = shuffled(len(normals), settings.data.seed)
    train_idx, cal_idx = split_fraction(order, settings.data.calibration_fraction)
    _check_calibration_size(len(cal_idx), _spec(settings))
    x_train = normals.features[np.sort(train_idx)]
    if not np.isfinite(x_train).all():
        msg = "training data holds NaN or infinite values"
        raise DataError(msg)
    scaler = StandardScaler.fit(x_train)
    context, context_scaler, raw_context = _context_of(settings, normals, train_idx)
    preprocess = TabularPreprocess(FeatureSchema(normals.names), scaler, context, context_scaler)
    m = settings.model
    score_kind = resolve_score_kind(m.score_kind, conditional=context is not None)
    fused = score_kind in NEIGHBOUR_SCORE_KINDS
    held_out = math.floor(len(train_idx) * settings.training.val_fraction)
    if fused and held_out < MIN_REFERENCE_ROWS:  # say so before training, not after
        msg = f"model.score_kind={score_kind}: {reference_rows_message(held_out)}"
        raise ConfigError(msg)
    try:
        model_config = config_from_dict(m.name, _model_values(settings, x_train.shape[1], context))
        train_config = train_config_of(settings.training)
    except (KeyError, ValueError) as exc:
        raise ConfigError(str(exc).strip("'\"")) from exc
    bundle, result = fit_bundle(
        m.name, model_config, scaler.transform(x_train), train_config, preprocess,
        "neg_elbo" if fused else score_kind,  # fused: once indexed below
        callbacks=callbacks,
        cond=None if raw_context is None else preprocess.condition(raw_context),
        meta={"trained_at": utc_now(), "n_train": int(x_train.shape[0])},
        is_samples=m.is_samples,
    )  # fmt: skip
    if fused:
        try:
            bundle = with_fusion(
                bundle, x_train, result.val_rows, score_kind=score_kind, k=m.neighbours,
                max_rows=m.neighbour_rows, seed=settings.training.seed, context=raw_context,
            )  # fmt: skip
        except ValueError as exc:
            msg = f"model.score_kind={score_kind}: {exc}"
            raise ConfigError(msg) from exc
    return bundle, result, normals.subset(np.sort(cal_idx))


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
    params = flatten(settings.model_dump(mode="json", exclude={"tracking"}))
    from streamvae.workflows.train_stream import is_streaming, open_rows, train_streamed

    _, size = world()
    if size > 1:
        params["distributed.world_size"] = size
    if table is None and is_streaming(settings):  # Parquet larger than memory
        rows = open_rows(settings)
        head, _ = next(rows.batches())
        return train_in_run(
            lambda cbs: train_streamed(settings, rows, cbs), params, settings.tracking,
            callbacks, signature=feature_signature(rows.names, explained=min(3, len(rows.names))),
            input_example=_input_example(Table(head, rows.names)),
        )  # fmt: skip
    data = load_training_table(settings) if table is None else table
    return train_in_run(
        lambda cbs: train_tabular(settings, data, cbs),
        params,
        settings.tracking,
        callbacks,
        signature=feature_signature(data.names, explained=min(3, len(data.names))),
        input_example=_input_example(data),
    )


def train_shard(settings: TrainSettings, table: Table | None = None) -> None:
    """A rank other than 0 of a distributed run (``torchrun``): fit alongside rank 0.

    In memory every rank reads the data and draws the same seeded split; the fit trains
    each on its shard of the rows and keeps their weights equal. Streamed, every rank reads
    only its share of the Parquet rows (:mod:`streamvae.workflows.train_stream`). Rank 0
    (:func:`train`) alone logs and registers; this rank's bundle is dropped.
    """
    from streamvae.workflows.train_stream import is_streaming, open_rows, train_streamed

    if table is None and is_streaming(settings):
        train_streamed(settings, open_rows(settings), [])
        return
    data = load_training_table(settings) if table is None else table
    build_bundle(settings, data, [])


def train_tabular(
    settings: TrainSettings, table: Table, callbacks: list[TrainingCallback]
) -> Trained:
    """Fit, calibrate on the held-out normals, and diagnose: the tabular training step."""
    bundle, result, calibration = build_bundle(settings, table, callbacks)
    if len(calibration):
        detector = TabularDetector(bundle)
        cal_scores = detector.select(detector.score_table(calibration))
        threshold, _ = calibrate_scores(cal_scores, _spec(settings), bundle.score_kind)
        bundle = bundle.with_threshold(threshold)
    detector = TabularDetector(bundle)
    # on the held-out normals when there are some, else on the training rows
    rows = calibration if len(calibration) else normals_of(settings, table)
    diagnostics = detector.diagnose(rows)
    return Trained(
        bundle, n_train=int(bundle.meta["n_train"]), n_calibration=len(calibration), fit=result,
        metrics=diagnostics.metrics(), anomaly_scores=_anomaly_scores(settings, detector, table),
    )  # fmt: skip


def _input_example(table: Table, rows: int = 5) -> pd.DataFrame:
    """The first few training rows, raw units, as the pyfunc takes them."""
    import pandas as pd

    head = table.features[:rows].astype(np.float64)
    return pd.DataFrame({name: head[:, j] for j, name in enumerate(table.names)})


def _anomaly_scores(
    settings: TrainSettings, detector: TabularDetector, table: Table
) -> npt.NDArray[np.float64] | None:
    """Scores of the labelled anomalies in the training data (never trained on), if any."""
    if table.labels is None or not settings.data.normal_only or not table.labels.any():
        return None
    odd = table.subset(np.flatnonzero(table.labels == 1))
    return detector.select(detector.score_table(odd))
