"""beta schedules: how the weight of the KL term moves during training.

A schedule maps training progress ``t`` in [0, 1] (epochs done plus the fraction of the
current epoch, over the epoch budget) to a factor in [0, 1]; the loss uses
``beta = factor * model.beta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ScheduleKind = Literal["constant", "linear", "cyclical"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BetaSchedule:
    """A beta schedule.

    Attributes:
        kind: ``constant`` (always beta), ``linear`` (warm-up from 0 to beta over the first
            ``warmup_fraction`` of training, then constant) or ``cyclical`` (Fu et al. 2019:
            ``cycles`` cycles; within each, beta rises linearly from 0 to beta over the first
            fraction ``ratio`` of the cycle, then holds).
        warmup_fraction: the linear warm-up's share of training.
        cycles: number of cycles M of the cyclical schedule.
        ratio: the rising share R of each cycle.

    >>> s = BetaSchedule(kind="cyclical", cycles=2, ratio=0.5)
    >>> [s.factor(t) for t in (0.0, 0.125, 0.25, 0.4, 0.5, 0.625, 1.0)]
    [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0]
    >>> [BetaSchedule(kind="linear", warmup_fraction=0.5).factor(t) for t in (0.0, 0.25, 0.9)]
    [0.0, 0.5, 1.0]
    """

    kind: ScheduleKind = "constant"
    warmup_fraction: float = 0.25
    cycles: int = 4
    ratio: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "linear", "cyclical"):
            msg = f"beta schedule kind must be constant, linear or cyclical, got {self.kind!r}"
            raise ValueError(msg)
        checks = {
            "warmup_fraction": 0.0 < self.warmup_fraction <= 1.0,
            "cycles": self.cycles >= 1,
            "ratio": 0.0 < self.ratio <= 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                msg = f"invalid beta schedule setting {name}={getattr(self, name)!r}"
                raise ValueError(msg)

    def factor(self, progress: float) -> float:
        """The share of beta in force at ``progress`` in [0, 1] (clipped)."""
        t = min(max(progress, 0.0), 1.0)
        if self.kind == "constant":
            return 1.0
        if self.kind == "linear":
            return min(1.0, t / self.warmup_fraction)
        if t >= 1.0:  # the end of the last cycle is its plateau
            return 1.0
        within = t * self.cycles - math.floor(t * self.cycles)
        return min(1.0, within / self.ratio)
