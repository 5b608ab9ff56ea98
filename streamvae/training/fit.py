"""The fit loop: mini-batch Adam on normal data, validation split, early stopping, seeding."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from streamvae.models import BaseVAE
from streamvae.training.callbacks import CallbackList, TrainingCallback
from streamvae.training.distributed import all_gather, all_mean, shard, world
from streamvae.training.schedules import BetaSchedule

DeviceName = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
        epochs: maximum number of epochs.
        batch_size: mini-batch size.
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        val_fraction: share of the training rows held out for early stopping (0 = none).
        patience: epochs without a ``min_delta`` improvement of the validation loss before
            stopping (0 = never stop early).
        min_delta: smallest improvement that counts.
        grad_clip: max gradient norm (0 = no clipping).
        seed: seeds the split, the initial weights, shuffling and sampling.
        device: ``auto`` picks CUDA when present.
        mixed_precision: bfloat16 autocast for the forward pass on CUDA (``auto``: on when
            training on CUDA; never on the CPU, where it is slower).
        beta_schedule: how the KL weight moves from 0 to the model's beta during training
            (validation and early stopping always use the full beta).
        missing_injection: share of observed inputs marked missing at random in each
            training batch (zeroed and left out of the loss: Donut's missing-data injection,
            so the model learns to reconstruct across gaps); 0 = off.
        hide_last: share of training rows whose last input is hidden from the encoder but
            kept in the loss: teaches a window model to predict its newest point from the
            rest of the window, which is how KPI scoring asks for it; 0 = off.
        min_steps: train for at least this many optimiser steps: on a small data set
            (few batches an epoch) the epoch limit is raised to reach it, up to
            ``max_epochs`` (see :func:`epoch_budget`); 0 = ``epochs`` as given.
        patience_steps: early-stopping patience in optimiser steps: ``patience`` is
            raised to cover at least this many steps, so a small data set is not stopped
            after a handful of updates; 0 = ``patience`` as given.
        max_epochs: the most epochs ``min_steps`` may raise the limit to.
    """

    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.2
    patience: int = 10
    min_delta: float = 1e-4
    grad_clip: float = 10.0
    seed: int = 0
    device: DeviceName = "auto"
    mixed_precision: Literal["auto", "off"] = "auto"
    beta_schedule: BetaSchedule = field(default_factory=BetaSchedule)
    missing_injection: float = 0.0
    hide_last: float = 0.0
    min_steps: int = 0
    patience_steps: int = 0
    max_epochs: int = 2000

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "weight_decay": self.weight_decay >= 0,
            "val_fraction": 0.0 <= self.val_fraction < 1.0,
            "patience": self.patience >= 0,
            "min_delta": self.min_delta >= 0,
            "grad_clip": self.grad_clip >= 0,
            "missing_injection": 0.0 <= self.missing_injection < 1.0,
            "hide_last": 0.0 <= self.hide_last <= 1.0,
            "min_steps": self.min_steps >= 0,
            "patience_steps": self.patience_steps >= 0,
            "max_epochs": self.max_epochs >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                msg = f"invalid training setting {name}={getattr(self, name)!r}"
                raise ValueError(msg)
        if self.device not in ("auto", "cpu", "cuda"):
            msg = f"device must be auto, cpu or cuda, got {self.device!r}"
            raise ValueError(msg)


def epoch_budget(config: TrainConfig, n_train: int) -> tuple[int, int]:
    """Epoch limit and patience (in epochs) for ``n_train`` training rows.

    With ``b = ceil(n_train / batch_size)`` steps an epoch, the limit is
    ``max(epochs, ceil(min_steps / b))`` capped at ``max(epochs, max_epochs)``, and the
    patience ``max(patience, ceil(patience_steps / b))`` (0 stays 0: never stop early).
    A large data set keeps the configured figures; a small one gets the steps it needs.

    >>> epoch_budget(TrainConfig(epochs=100, patience=10, min_steps=4000,
    ...                          patience_steps=400), 1_000)
    (500, 50)
    >>> epoch_budget(TrainConfig(epochs=100, patience=10, min_steps=4000,
    ...                          patience_steps=400), 100_000)
    (100, 10)
    """
    steps = max(1, math.ceil(n_train / config.batch_size))
    epochs = max(config.epochs, min(math.ceil(config.min_steps / steps), config.max_epochs))
    patience = config.patience
    if patience:
        patience = max(patience, math.ceil(config.patience_steps / steps))
    return epochs, patience


@dataclass(slots=True)
class FitResult:
    """The outcome of :func:`fit` (the model holds the best weights, in eval mode).

    Attributes:
        val_rows: indices (into the training matrix) of the rows held out for early
            stopping: never trained on, so their scores are out-of-sample.
    """

    best_epoch: int
    epochs_run: int
    stopped_early: bool
    device: str
    history: list[dict[str, float]] = field(default_factory=list)
    val_rows: npt.NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, dtype=np.intp))

    @property
    def best_metrics(self) -> dict[str, float]:
        """Metrics of the best epoch."""
        return self.history[self.best_epoch]


def resolve_device(name: DeviceName) -> torch.device:
    """``auto`` -> CUDA when available, else CPU.

    Raises:
        ValueError: CUDA requested but not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        msg = "device 'cuda' requested but no CUDA device is available; use 'auto' or 'cpu'"
        raise ValueError(msg)
    return torch.device(name)


class _Data(NamedTuple):
    x: torch.Tensor
    cond: torch.Tensor | None
    mask: torch.Tensor | None

    def rows(
        self, index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        index = index.to(self.x.device)
        cond = None if self.cond is None else self.cond[index]
        return self.x[index], cond, None if self.mask is None else self.mask[index]

    def part(self, rows: slice) -> _Data:
        return _Data(
            self.x[rows],
            None if self.cond is None else self.cond[rows],
            None if self.mask is None else self.mask[rows],
        )


def _inject_missing(
    batch: torch.Tensor, mask: torch.Tensor | None, rate: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mark a random ``rate`` of the inputs missing: zeroed, and masked out of the loss."""
    keep = torch.rand(batch.shape, generator=generator) >= rate
    keep_t = keep.to(device=batch.device, dtype=batch.dtype)
    mask = keep_t if mask is None else mask * keep_t
    return batch * mask, mask


def _run_epoch(
    model: BaseVAE,
    data: _Data,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer | None,
    generator: torch.Generator,
    epoch: int,
    total_epochs: int,
    forward: nn.Module | None = None,
) -> dict[str, float]:
    """One pass over ``data``; trains when an optimizer is given, else evaluates.

    ``total_epochs`` is the epoch limit the beta schedule's progress is measured against;
    ``forward`` runs the training forward pass (the model behind DDP), else the model.
    """
    training = optimizer is not None
    model.train(training)
    n = data.x.shape[0]
    amp = uses_mixed_precision(config, str(data.x.device))
    order = torch.randperm(n, generator=generator) if training else torch.arange(n)
    totals = {"loss": 0.0, "recon_nll": 0.0, "kl": 0.0}
    steps = math.ceil(n / config.batch_size)
    beta_used = model.beta
    with torch.set_grad_enabled(training):
        for step, start in enumerate(range(0, n, config.batch_size)):
            batch, cond, mask = data.rows(order[start : start + config.batch_size])
            if training and config.missing_injection > 0:
                batch, mask = _inject_missing(batch, mask, config.missing_injection, generator)
            seen = batch
            if training and config.hide_last > 0:
                hide = torch.rand(batch.shape[0], generator=generator) < config.hide_last
                seen = batch.clone()
                seen[hide.to(batch.device), -1] = 0.0
            with torch.autocast(device_type=batch.device.type, dtype=torch.bfloat16, enabled=amp):
                out = (forward if training and forward is not None else model)(seen, cond)
            if amp:  # the networks run in bfloat16; the ELBO terms are summed in float32
                out = out.to_float()
            beta = None  # validation: the full beta, so epochs compare
            if optimizer is not None:
                progress = (epoch + step / steps) / total_epochs
                beta = beta_used = config.beta_schedule.factor(progress) * model.beta
            terms = model.loss(batch, out, beta, mask)
            if optimizer is not None:
                _step(model, terms.loss, optimizer, config.grad_clip)
            weight = batch.shape[0]
            totals["loss"] += float(terms.loss.detach()) * weight
            totals["recon_nll"] += float(terms.recon_nll.detach()) * weight
            totals["kl"] += float(terms.kl.detach()) * weight
    means = {k: v / n for k, v in totals.items()}
    if training:
        means["beta"] = beta_used  # the beta in force at the epoch's last step
    return means


def _data_parallel(model: BaseVAE, device: str) -> nn.Module:
    """``model`` behind ``DistributedDataParallel``: gradients averaged over the ranks."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index or 0] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def local_batch_size(config: TrainConfig) -> int:
    """The mini-batch of this rank: the global ``batch_size`` split over the ranks.

    Under torchrun the ranks' mini-batches together make one of ``batch_size`` rows, so
    the optimiser steps, and the gradient's noise, are those of one process.
    """
    _, size = world()
    return max(1, config.batch_size // size)


def uses_mixed_precision(config: TrainConfig, device: str) -> bool:
    """Whether :func:`fit` autocasts to bfloat16 on ``device``."""
    return config.mixed_precision == "auto" and device.startswith("cuda")


def fit(
    build: Callable[[], BaseVAE],
    x: npt.NDArray[np.float32],
    config: TrainConfig,
    callbacks: list[TrainingCallback] | None = None,
    cond: npt.NDArray[np.float32] | None = None,
    mask: npt.NDArray[np.float32] | None = None,
) -> tuple[BaseVAE, FitResult]:
    """Build a model and train it on normal rows ``x`` (already scaled), with early stopping.

    The model is built inside the seeded region, so the same seed gives the same initial
    weights, split, shuffling and samples, hence the same trained weights on the same
    device. The global random state is forked: the caller's RNG is left as it was.

    Args:
        build: makes a fresh model, e.g. ``lambda: VAE(VAEConfig(input_dim=d))``.
        x: ``(n, d)`` float32 training rows, normal only.
        config: optimisation settings.
        callbacks: progress listeners.
        cond: ``(n, m)`` condition of each row, for conditional families.
        mask: ``(n, d)`` 1 where an input was observed, 0 where it is missing (its value in
            ``x`` should be 0); missing inputs are left out of the loss.

    Returns:
        The model holding its best-validation weights, in eval mode, and the
        :class:`FitResult`.

    Raises:
        ValueError: empty or non-finite data, a validation split that leaves nothing, or
            a diverging loss.
    """
    if x.ndim != 2 or x.shape[0] < 2 or not np.isfinite(x).all():
        msg = f"training data must be a finite (n >= 2, d) matrix, got shape {x.shape}"
        raise ValueError(msg)
    if cond is not None and (cond.ndim != 2 or cond.shape[0] != x.shape[0]):
        msg = f"condition must have one row per training row, got shape {cond.shape}"
        raise ValueError(msg)
    if mask is not None and mask.shape != x.shape:
        msg = f"mask must have the shape of the data {x.shape}, got {mask.shape}"
        raise ValueError(msg)
    events = CallbackList(callbacks or [])
    with _seeded(config) as (device, generator):
        n_val = math.floor(x.shape[0] * config.val_fraction)
        perm = torch.randperm(x.shape[0], generator=generator).numpy()
        every = _Data(
            _tensor(x[perm], device),
            None if cond is None else _tensor(cond[perm], device),
            None if mask is None else _tensor(mask[perm], device),
        )
        val, train = every.part(slice(None, n_val)), every.part(slice(n_val, None))
        rank, size = world()
        if train.x.shape[0] < size:
            msg = f"val_fraction {config.val_fraction} leaves no training rows out of {x.shape[0]}"
            raise ValueError(msg)
        if size > 1:  # data parallel: every rank has the same split, trains on its shard
            train = train.part(shard(train.x.shape[0], rank, size))
            val = val.part(shard(val.x.shape[0], rank, size))
        model = build().to(device)
        result = _fit_loop(model, train, val, config, events, generator, str(device))
    result.val_rows = np.sort(perm[:n_val]).astype(np.intp)
    return model, result


@contextmanager
def _seeded(config: TrainConfig) -> Iterator[tuple[torch.device, torch.Generator]]:
    """The training device and a seeded generator, in a forked (then restored) RNG state.

    Everything random inside (initial weights, split, shuffling, samples) follows
    ``config.seed``; the caller's random state is left as it was.
    """
    device = resolve_device(config.device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        yield device, torch.Generator().manual_seed(config.seed)


def _tensor(values: npt.NDArray[np.float32], device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).to(device)


def _fit_loop(
    model: BaseVAE,
    train_data: _Data,
    val_data: _Data,
    config: TrainConfig,
    events: CallbackList,
    generator: torch.Generator,
    device: str,
) -> FitResult:
    optimizer = _optimizer(model, config)
    _, size = world()
    # the budget of the whole data set; each of the ``size`` ranks takes its share of every
    # batch, so the optimiser steps, and the global batch, are those of one process
    epochs, patience = epoch_budget(config, train_data.x.shape[0] * size)
    local = replace(config, batch_size=local_batch_size(config))
    forward = _data_parallel(model, device) if size > 1 else model

    def epoch_metrics(epoch: int) -> dict[str, float]:
        train = _run_epoch(model, train_data, local, optimizer, generator, epoch, epochs, forward)
        metrics = _train_metrics(model, all_mean(train))
        if val_data.x.shape[0]:
            val = all_mean(_run_epoch(model, val_data, local, None, generator, epoch, epochs))
            metrics.update({f"val_{k}": v for k, v in val.items()})
        return metrics

    return _early_stopping(model, epoch_metrics, epochs, patience, config, events, device)


def _optimizer(model: BaseVAE, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )


def _step(
    model: BaseVAE, loss: torch.Tensor, optimizer: torch.optim.Optimizer, grad_clip: float
) -> None:
    """One optimiser step on ``loss`` (gradients clipped to ``grad_clip`` when above 0)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


def _train_metrics(model: BaseVAE, train: dict[str, float]) -> dict[str, float]:
    """An epoch's training means as logged: ``train_*``, the beta in force, the model's own."""
    metrics = {f"train_{k}": v for k, v in train.items() if k != "beta"}
    metrics["beta"] = train["beta"]
    metrics.update(model.training_metrics())
    return metrics


def _early_stopping(
    model: BaseVAE,
    epoch_metrics: Callable[[int], dict[str, float]],
    epochs: int,
    patience: int,
    config: TrainConfig,
    events: CallbackList,
    device: str,
) -> FitResult:
    """Run ``epoch_metrics`` epoch after epoch; keep the best weights; stop on patience.

    The monitored loss is the validation loss when the epoch has one, else the training
    loss at the full beta. The model ends with its best weights, in eval mode.

    Raises:
        ValueError: a non-finite monitored loss (the training diverged).
    """
    result = FitResult(best_epoch=0, epochs_run=0, stopped_early=False, device=device)
    best_loss, best_state, waited = math.inf, None, 0
    events.on_train_start(epochs)
    for epoch in range(epochs):
        metrics = epoch_metrics(epoch)
        monitored = metrics.get(
            "val_loss", metrics["train_recon_nll"] + model.beta * metrics["train_kl"]
        )
        if not math.isfinite(monitored):
            msg = f"training diverged at epoch {epoch} (loss {monitored}); lower the learning rate"
            raise ValueError(msg)
        result.history.append(metrics)
        result.epochs_run = epoch + 1
        events.on_epoch_end(epoch, metrics)
        if monitored < best_loss - config.min_delta:
            best_loss, waited, result.best_epoch = monitored, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if patience and waited >= patience:
                result.stopped_early = True
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    events.on_train_end(result.best_epoch, result.stopped_early)
    return result


def fit_stream(
    build: Callable[[], BaseVAE],
    batches: Callable[[int], Iterable[npt.NDArray[np.float32]]],
    n_train: int,
    val: npt.NDArray[np.float32],
    config: TrainConfig,
    callbacks: list[TrainingCallback] | None = None,
) -> tuple[BaseVAE, FitResult]:
    """:func:`fit` for data that does not fit in memory: mini-batches come from a stream.

    ``batches(epoch)`` yields the epoch's shuffled mini-batches of scaled training rows,
    :func:`local_batch_size` rows each (``n_train`` in all); ``val`` is the in-memory
    early-stopping sample. Same seeding, budget, early stopping and metrics as :func:`fit`
    (no condition, no missing values: feature vectors).

    Under torchrun each rank streams its own share of the rows (``n_train`` is the share's
    count; the budget is that of all the ranks' rows) through ``DistributedDataParallel``.
    Every rank takes the steps of the largest share each epoch (DDP syncs every step): a
    smaller share starts its stream again for its last few steps, so no row is left out.
    The validation sample, the same on every rank, is split between them.

    Raises:
        ValueError: no training rows (on some rank), or a diverging loss.
    """
    counts = all_gather(n_train)
    if min(counts) < 1:
        msg = "no training rows in the stream" + ("" if len(counts) == 1 else " of some rank")
        raise ValueError(msg)
    rank, size = world()
    local = replace(config, batch_size=local_batch_size(config))
    steps = max(math.ceil(count / local.batch_size) for count in counts)
    events = CallbackList(callbacks or [])
    with _seeded(config) as (device, generator):
        model = build().to(device)
        forward = _data_parallel(model, str(device)) if size > 1 else model
        val_part = val if size == 1 else val[shard(val.shape[0], rank, size)]
        val_data = _Data(_tensor(val_part, device), None, None)
        optimizer = _optimizer(model, config)
        epochs, patience = epoch_budget(config, sum(counts))

        def epoch_metrics(epoch: int) -> dict[str, float]:
            stream = _exactly(steps, lambda: batches(epoch))
            train = _stream_epoch(model, forward, stream, config, optimizer, epoch, epochs, steps)
            metrics = _train_metrics(model, all_mean(train))
            if val_part.shape[0]:
                scores = _run_epoch(model, val_data, local, None, generator, epoch, epochs)
                metrics.update({f"val_{k}": v for k, v in all_mean(scores).items()})
            return metrics

        result = _early_stopping(
            model, epoch_metrics, epochs, patience, config, events, str(device)
        )
    return model, result


def _exactly(
    steps: int, stream: Callable[[], Iterable[npt.NDArray[np.float32]]]
) -> Iterator[npt.NDArray[np.float32]]:
    """``steps`` mini-batches of ``stream()``, started again from its beginning if it ends early.

    Raises:
        ValueError: the stream yields no mini-batch at all.
    """
    made = 0
    while True:
        before = made
        for rows in stream():
            yield rows
            made += 1
            if made == steps:
                return
        if made == before:
            msg = "the training stream yields no mini-batch"
            raise ValueError(msg)


def _stream_epoch(
    model: BaseVAE,
    forward: nn.Module,
    batches: Iterable[npt.NDArray[np.float32]],
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    epochs: int,
    steps: int,
) -> dict[str, float]:
    """One pass of :func:`fit_stream` over the epoch's mini-batches: its means and beta."""
    model.train(True)
    device = next(model.parameters()).device
    totals, seen, step, beta = {"loss": 0.0, "recon_nll": 0.0, "kl": 0.0}, 0, 0, model.beta
    for rows in batches:
        batch = _tensor(rows, device)
        beta = config.beta_schedule.factor((epoch + step / steps) / epochs) * model.beta
        terms = model.loss(batch, forward(batch, None), beta, None)
        _step(model, terms.loss, optimizer, config.grad_clip)
        for key in totals:
            totals[key] += float(getattr(terms, key).detach()) * batch.shape[0]
        seen, step = seen + batch.shape[0], step + 1
    return {k: v / max(seen, 1) for k, v in totals.items()} | {"beta": beta}
