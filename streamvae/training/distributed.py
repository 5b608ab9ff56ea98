"""Data-parallel training with torch's own tools: ``torchrun`` starts the processes, DDP syncs.

``torchrun --nproc-per-node N -m streamvae train ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; each joins the
process group (gloo on the CPU, NCCL on GPUs, one GPU per local rank). :func:`fit` then
trains each rank on its shard of the rows (the seeded split is the same on every rank)
through ``DistributedDataParallel``, averages the epoch metrics over the ranks so every
rank takes the same early-stopping decision, and leaves the same best weights on all of
them. Rank 0 alone logs, calibrates and registers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar, cast

import torch
import torch.distributed as dist

GROUP_TIMEOUT = timedelta(minutes=30)  # a rank may wait this long for the others

T = TypeVar("T")


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the process group joined, ``(0, 1)`` outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_world_size() -> int:
    """The ``WORLD_SIZE`` torchrun set for this process (1 when not launched by it)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


@contextmanager
def process_group(device: str) -> Iterator[tuple[int, int]]:
    """Join torchrun's process group for the block when launched with ``WORLD_SIZE`` > 1.

    ``device``: ``cpu`` (gloo) or ``cuda`` / ``auto`` with GPUs (NCCL, this process on
    ``cuda:LOCAL_RANK``). Yields ``(rank, world_size)``; ``(0, 1)`` when not launched by
    torchrun (nothing to join) or already in a group (left to its owner).
    """
    if launched_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        yield world()
        return
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=GROUP_TIMEOUT)
    try:
        yield world()
    finally:
        dist.destroy_process_group()


def shard(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s rows of ``n``: every ``world_size``-th row from ``rank``.

    Every rank gets the same count (up to ``world_size - 1`` rows are left over), so all
    ranks take the same number of steps an epoch.

    >>> shard(10, 0, 3), shard(10, 2, 3)
    (slice(0, 9, 3), slice(2, 9, 3))
    """
    usable = n - n % world_size
    return slice(rank, usable, world_size)


def all_mean(values: dict[str, float]) -> dict[str, float]:
    """The mean of each value over the ranks (the values themselves outside a group)."""
    _, size = world()
    if size == 1 or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":  # NCCL reduces GPU tensors only
        tensor = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(tensor)
    return {k: float(v) / size for k, v in zip(keys, tensor.cpu().tolist(), strict=True)}


def all_gather(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` outside a group).

    For small picklable things (counts, moments, bounded samples), not tensors of a batch.
    """
    _, size = world()
    if size == 1:
        return [value]
    gathered: list[object] = [None] * size
    dist.all_gather_object(gathered, value)
    return cast("list[T]", gathered)
