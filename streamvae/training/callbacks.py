"""How training reports progress without knowing who listens (MLflow, a progress bar)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class TrainingCallback(Protocol):
    """Receives training events; implementations live at the edges (tracking, CLI)."""

    def on_train_start(self, max_epochs: int) -> None:
        """Training begins; at most ``max_epochs`` epochs will run."""
        ...

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Epoch ``epoch`` (0-based) ended with these metrics (train_*/val_* means)."""
        ...

    def on_train_end(self, best_epoch: int, stopped_early: bool) -> None:
        """Training ended; the weights of ``best_epoch`` are restored."""
        ...


class CallbackList:
    """Fans events out to several callbacks."""

    def __init__(self, callbacks: Sequence[TrainingCallback] = ()) -> None:
        self._callbacks = tuple(callbacks)

    def on_train_start(self, max_epochs: int) -> None:
        """See :class:`TrainingCallback`."""
        for cb in self._callbacks:
            cb.on_train_start(max_epochs)

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """See :class:`TrainingCallback`."""
        for cb in self._callbacks:
            cb.on_epoch_end(epoch, metrics)

    def on_train_end(self, best_epoch: int, stopped_early: bool) -> None:
        """See :class:`TrainingCallback`."""
        for cb in self._callbacks:
            cb.on_train_end(best_epoch, stopped_early)
