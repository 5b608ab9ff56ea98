"""Training on Parquet data larger than memory: the tabular ``train`` read batch by batch.

Used when ``data.path`` is a directory or a glob of Parquet files, or ``data.streaming`` is
on. Memory stays bounded whatever the data's size: a read batch, the shuffle buffer and a
few capped samples. Passes over the data:

1. **Statistics**: every row gets a seeded number from its values
   (:func:`~streamvae.data.streaming.row_fraction`): below ``data.calibration_fraction`` it
   calibrates; in the next ``training.val_fraction`` of the rest it is an early-stopping
   row; else it trains. The scaler is fitted on the training rows (running moments); a
   stable sample of early-stopping rows (``VAL_ROWS``) and of training rows (for the
   neighbour index, ``INDEX_ROWS``) is kept. The split is the same in every run and any
   batching, with no index to store.
2. **Epochs**: the training rows, scaled, through a seeded shuffle buffer
   (``SHUFFLE_ROWS``); early stopping on the in-memory early-stopping sample. With
   ``training.epochs`` unset the budget is ``STREAM_STEPS`` optimiser steps (at least one
   epoch, at most 100): a billion-row file is not read 100 times.
3. **Calibration**: the threshold is calibrated on the scores of a stable sample of at most
   ``CALIBRATION_SCORES`` calibration rows (those of smallest hash), scored batch by batch.

Under ``torchrun`` each rank reads only its contiguous share of the rows
(:meth:`~streamvae.data.streaming.ParquetRows.part`) in every pass. The ranks' moments,
counts and samples are gathered and merged in rank order, so the scaler, the split and
the samples are those of one process, on every rank; each rank trains on its share
(:func:`~streamvae.training.fit_stream`), scores its share's calibration rows, and the
kept calibration scores are merged the same way. Rank 0 alone logs and registers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamvae.bundle import ModelBundle, TabularDetector, TabularPreprocess
from streamvae.bundle.fusion import MIN_REFERENCE_ROWS, reference_rows_message, with_fusion
from streamvae.config import TrainSettings
from streamvae.data import FeatureSchema, Table
from streamvae.data.schema import StandardScaler
from streamvae.data.streaming import (
    BottomK,
    ParquetRows,
    RunningMoments,
    ShuffleBuffer,
    is_glob,
    row_fraction,
)
from streamvae.errors import ConfigError, DataError
from streamvae.models import build_model, config_from_dict
from streamvae.tracking import Trained
from streamvae.training import FitResult, TrainingCallback, fit_stream, local_batch_size
from streamvae.training.distributed import all_gather, world
from streamvae.types import NEIGHBOUR_SCORE_KINDS
from streamvae.workflows.fitting import bundle_of
from streamvae.workflows.train import (
    _model_values,
    _spec,
    calibrate_scores,
    resolve_score_kind,
    train_config_of,
    utc_now,
)

F32 = npt.NDArray[np.float32]

VAL_ROWS = 100_000
"""Early-stopping rows kept in memory (a stable sample beyond)."""
INDEX_ROWS = 20_000
"""Training rows kept to build the neighbour index from (it keeps ``model.neighbour_rows``)."""
CALIBRATION_SCORES = 1_000_000
"""Calibration scores the threshold is fitted on (a stable sample beyond)."""
SHUFFLE_ROWS = 262_144
"""Rows of the shuffle buffer."""
STREAM_STEPS = 50_000
"""Optimiser steps of the automatic budget on streamed data."""
RANK_SEED = 1_000_003
"""Seed step between the ranks' shuffle buffers (rank 0 keeps the one-process seed)."""


def is_streaming(settings: TrainSettings) -> bool:
    """Whether ``data.path`` names Parquet data to stream (a directory, a glob, or on request)."""
    path = settings.data.path
    if path is None:
        return False
    return settings.data.streaming or Path(path).is_dir() or is_glob(path)


class _Split:
    """Pass 1: the scaler, the counts and the samples, from one read of the data.

    ``rows`` is this rank's share under torchrun: the statistics are then merged over the
    ranks (the whole data's), while ``n_local`` stays the share's training rows.
    """

    def __init__(self, settings: TrainSettings, rows: ParquetRows) -> None:
        data = settings.data
        self.seed = data.seed
        self.cal = data.calibration_fraction
        self.val_end = self.cal + (1.0 - self.cal) * settings.training.val_fraction
        self.moments = RunningMoments()
        self.val, self.index = BottomK(VAL_ROWS), BottomK(INDEX_ROWS)
        self.n_train = self.n_val = self.n_cal = self.n_anomalies = 0
        self.normal_only = data.normal_only
        for x, y in rows.batches():
            if y is not None:
                self.n_anomalies += int((y == 1).sum())
            x = self._kept(x, y)
            if not np.isfinite(x).all():
                msg = f"{rows.files[0]!r}...: the training data holds NaN or infinite values"
                raise DataError(msg)
            f = row_fraction(x, self.seed)
            train = f >= self.val_end
            val = (f >= self.cal) & ~train
            self.moments.update(x[train])
            self.val.add(x[val], f[val])
            self.index.add(x[train], f[train])
            self.n_train += int(train.sum())
            self.n_val += int(val.sum())
            self.n_cal += int((f < self.cal).sum())
        self.n_local = self.n_train
        _, size = world()
        if size > 1:
            self._merge(all_gather(self))

    def _merge(self, shares: list[_Split]) -> None:
        """The statistics of all the ranks' shares, merged in rank order (equal on every rank)."""
        self.moments = RunningMoments()
        self.val = _merged([s.val for s in shares], VAL_ROWS)
        self.index = _merged([s.index for s in shares], INDEX_ROWS)
        for share in shares:
            self.moments.merge(share.moments)
        self.n_train = sum(s.n_train for s in shares)
        self.n_val = sum(s.n_val for s in shares)
        self.n_cal = sum(s.n_cal for s in shares)
        self.n_anomalies = sum(s.n_anomalies for s in shares)

    def _kept(self, x: F32, y: npt.NDArray[np.int8] | None) -> F32:
        """The rows training may use: the normal ones under ``data.normal_only``."""
        if y is None or not self.normal_only:
            return x
        kept: F32 = x[y != 1]
        return kept

    def train_rows(self, rows: ParquetRows, scaler: StandardScaler) -> Iterator[F32]:
        """The scaled training rows of each read batch."""
        for x, y in rows.batches():
            x = self._kept(x, y)
            yield scaler.transform(x[row_fraction(x, self.seed) >= self.val_end])

    def calibration_rows(self, rows: ParquetRows) -> Iterator[tuple[F32, npt.NDArray[np.float64]]]:
        """The raw calibration rows of each read batch that may enter the kept sample.

        The threshold is fitted on the ``CALIBRATION_SCORES`` rows of smallest hash; a row
        hashed above ``1.1 x`` that share of the calibration band cannot be one of them
        (but by a chance too small to matter), so it is not scored at all.
        """
        share = min(1.0, 1.1 * CALIBRATION_SCORES / max(self.n_cal, 1))
        for x, y in rows.batches():
            x = self._kept(x, y)
            f = row_fraction(x, self.seed)
            cal = f < self.cal * share
            yield x[cal], f[cal]


def _merged(samples: list[BottomK], k: int) -> BottomK:
    """One sample of the ``k`` smallest keys out of ``samples`` (the ranks', in rank order)."""
    merged = BottomK(k)
    for sample in samples:
        merged.merge(sample)
    return merged


def open_rows(settings: TrainSettings) -> ParquetRows:
    """The Parquet data ``data.path`` names, ready to read batch by batch (schema only).

    Raises:
        ConfigError: a setting streaming does not support (context columns).
        DataError: no Parquet file, or a missing column.
    """
    data = settings.data
    if data.context_columns or data.categorical_columns:
        msg = "context columns (cvae, dcvae) need data that fits in memory: not streamed yet"
        raise ConfigError(msg)
    return ParquetRows.open(
        data.path or "", label_column=data.label_column, feature_columns=data.feature_columns,
        batch_rows=data.batch_rows,
    )  # fmt: skip


def train_streamed(
    settings: TrainSettings, rows: ParquetRows, callbacks: list[TrainingCallback]
) -> Trained:
    """Fit, index, calibrate and diagnose on streamed Parquet data: the training step.

    Raises:
        ConfigError: a bad setting.
        DataError: non-finite values, too few rows of a role.
    """
    data = settings.data
    rank, size = world()
    rows = rows.part(rank, size)
    split = _Split(settings, rows)
    if split.n_train < 10:
        msg = f"need at least 10 normal training rows, got {split.n_train}"
        raise DataError(msg)
    scaler = split.moments.scaler()
    bundle, result = _fit(settings, rows, split, scaler, callbacks)
    detector = TabularDetector(bundle)
    thresholds, n_cal = None, 0
    if data.calibration_fraction > 0:
        scores = BottomK(CALIBRATION_SCORES)
        for x, f in split.calibration_rows(rows):
            if x.shape[0]:
                scores.add(detector.select(detector.score(x)), f)
        if size > 1:
            scores = _merged(all_gather(scores), CALIBRATION_SCORES)
        n_cal = split.n_cal
        kept = scores.result().astype(np.float64)
        if kept.size:
            thresholds, _ = calibrate_scores(kept, _spec(settings), bundle.score_kind)
            bundle = bundle.with_threshold(thresholds)
    val = split.val.result().astype(np.float32)
    diagnostics = TabularDetector(bundle).diagnose(Table(val, rows.names)) if val.size else None
    return Trained(
        bundle, n_train=split.n_train, n_calibration=n_cal, fit=result,
        metrics={} if diagnostics is None else diagnostics.metrics(),
    )  # fmt: skip


def _fit(
    settings: TrainSettings,
    rows: ParquetRows,
    split: _Split,
    scaler: StandardScaler,
    callbacks: list[TrainingCallback],
) -> tuple[ModelBundle, FitResult]:
    """The model, trained on the stream (and indexed for the fused score)."""
    m = settings.model
    score_kind = resolve_score_kind(m.score_kind, conditional=False)
    fused = score_kind in NEIGHBOUR_SCORE_KINDS
    val = split.val.result().astype(np.float32)
    if fused and val.shape[0] < MIN_REFERENCE_ROWS:
        msg = f"model.score_kind={score_kind}: {reference_rows_message(val.shape[0])}"
        raise ConfigError(msg)
    try:
        config = config_from_dict(m.name, _model_values(settings, len(rows.names), None))
        train = train_config_of(settings.training)
    except (KeyError, ValueError) as exc:
        raise ConfigError(str(exc).strip("'\"")) from exc
    steps = max(1, math.ceil(split.n_train / train.batch_size))
    if settings.training.epochs is None:  # the automatic budget, in steps on a stream
        epochs = min(100, max(1, math.ceil(STREAM_STEPS / steps)))
        train = replace(train, epochs=epochs, min_steps=0)
    batch = local_batch_size(train)
    capacity = max(SHUFFLE_ROWS, 2 * batch)
    rank, _ = world()

    def batches(epoch: int) -> Iterator[F32]:
        seed = settings.training.seed + epoch + RANK_SEED * rank
        return ShuffleBuffer(capacity, batch, seed).batches(split.train_rows(rows, scaler))

    model, result = fit_stream(
        lambda: build_model(m.name, config), batches, split.n_local, scaler.transform(val),
        train, callbacks,
    )  # fmt: skip
    preprocess = TabularPreprocess(FeatureSchema(rows.names), scaler)
    meta = {"trained_at": utc_now(), "n_train": split.n_train, "streamed": True}
    bundle = bundle_of(
        m.name, config, model, result, preprocess, "neg_elbo" if fused else score_kind, meta,
        m.is_samples,
    )  # fmt: skip
    if fused:
        index = split.index.result().astype(np.float32)
        raw = np.concatenate([index, val])
        held_out = np.arange(index.shape[0], raw.shape[0], dtype=np.intp)
        try:
            bundle = with_fusion(
                bundle, raw, held_out, score_kind=score_kind, k=m.neighbours,
                max_rows=m.neighbour_rows, seed=settings.training.seed,
            )  # fmt: skip
        except ValueError as exc:
            msg = f"model.score_kind={score_kind}: {exc}"
            raise ConfigError(msg) from exc
    return bundle, result
