"""Training: the fit loop, early stopping, seeding, device choice."""

from __future__ import annotations

from streamvae.training.callbacks import CallbackList, TrainingCallback
from streamvae.training.fit import (
    FitResult,
    TrainConfig,
    epoch_budget,
    fit,
    fit_stream,
    local_batch_size,
    resolve_device,
)
from streamvae.training.schedules import BetaSchedule

__all__ = [
    "BetaSchedule",
    "CallbackList",
    "FitResult",
    "TrainConfig",
    "TrainingCallback",
    "epoch_budget",
    "fit",
    "fit_stream",
    "local_batch_size",
    "resolve_device",
]
