"""Per-series streaming scores for KPI points that mean the same on every series. Pure numpy.

A window model's raw score of a point (its residual from the model's expectation) has a
different scale on every series: a fleet-wide threshold on it fires all day on one noisy
series and never on a quiet one. :class:`SeriesScorer` turns each point into an anomaly
score in [0, 1) with one meaning everywhere, from what that series has shown so far, in
bounded memory and time per point:

1. **Two raw parts.** The model's residual of the newest point (what the window model
   expects), and the series' *novelty*: the distance of the current window (series-scaled)
   to the nearest window of the series' own recent history (the last ``novelty_memory``
   points, windows overlapping the current one left out). The novelty part learns as the
   stream goes: a pattern seen once is no longer new the next time, a level shift is
   surprising once and then becomes the series' normal; the frozen model part keeps the
   long-term shape.
2. **Tail surprise per series** (Ahmad et al. 2017, HTM's anomaly likelihood): each part
   becomes ``-log10 p`` of a Gaussian tail fitted to the same part's last
   ``likelihood_window`` values on this series (the value itself is compared with the
   values before it); ``surprise = 1 - exp(-(-log10 p) / 10)``, monotone, so 0.5 is
   ``p ~ 1e-3``, 0.9 is ``p ~ 1e-10``. Before ``likelihood_min`` values the part is 0.
3. **Fusion**: the mean of the two parts' surprises.
4. **One score per incident** (``suppress_points``): the emitted score is the fused score
   only where it exceeds every fused score of the previous ``suppress_points - 1`` points
   of the series, else 0, so a long excursion raises one alert at its onset (and again
   only if it gets worse), not one per point. It depends on the past only and on no
   threshold, so any threshold an operator (or NAB's optimiser) picks sees the same rule.

Memory per series: ``novelty_memory + window_len`` scaled points, two rings of
``likelihood_window`` part values and a ring of ``suppress_points`` fused scores, all
float64: with the defaults about 200 KiB. Time per point: one ``novelty_memory x
window_len`` distance computation (about 0.1 ms) plus O(1) updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

F64 = npt.NDArray[np.float64]
_LOG10 = math.log(10.0)
_MIN_SD = 1e-9


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamScoring:
    """How raw KPI scores become comparable anomaly scores (see the module docstring).

    Attributes:
        likelihood_window: past values of each part the tail is fitted to (8,640: 30 days
            of 5-minute points, HTM's default).
        likelihood_min: values needed before a part scores (earlier points score 0).
        novelty_memory: recent points whose windows the current window is compared with.
        suppress_points: a fused score is emitted only when it is the highest of this many
            points (1: every score is emitted).
    """

    likelihood_window: int = 8640
    likelihood_min: int = 100
    novelty_memory: int = 4000
    suppress_points: int = 1000

    def __post_init__(self) -> None:
        if self.likelihood_min < 2 or self.likelihood_window < self.likelihood_min:
            msg = (
                f"invalid stream scoring likelihood_window={self.likelihood_window}, "
                f"likelihood_min={self.likelihood_min}"
            )
            raise ValueError(msg)
        if self.novelty_memory < 1 or self.suppress_points < 1:
            msg = (
                f"invalid stream scoring novelty_memory={self.novelty_memory}, "
                f"suppress_points={self.suppress_points}"
            )
            raise ValueError(msg)


def surprise(z: float) -> float:
    """``1 - exp(-(-log10 p) / 10)`` for the Gaussian upper-tail ``p`` of ``z``.

    >>> round(surprise(0.0), 4), round(surprise(3.0), 4), surprise(-5.0) < 0.01
    (0.0297, 0.2495, True)
    """
    log_p = _log_upper_tail(z)
    return 1.0 - math.exp(log_p / (10.0 * _LOG10))


def _log_upper_tail(z: float) -> float:
    """``log P(Z > z)`` for a standard normal, accurate far into the tail."""
    if z < 5.0:
        return math.log(max(0.5 * math.erfc(z / math.sqrt(2.0)), 1e-300))
    # asymptotic expansion: P(Z > z) ~ phi(z) / z * (1 - 1/z^2 + 3/z^4)
    return -0.5 * z * z - math.log(z * math.sqrt(2.0 * math.pi)) + math.log1p(-1 / z**2 + 3 / z**4)


class RollingTail:
    """The last ``size`` values of one part, with running sums for their mean and spread."""

    __slots__ = ("count", "head", "size", "sq", "total", "values")

    def __init__(self, size: int) -> None:
        self.size = size
        self.values = np.zeros(size, np.float64)
        self.head = 0
        self.count = 0
        self.total = 0.0
        self.sq = 0.0

    def z(self, value: float) -> float:
        """How many standard deviations ``value`` lies above the values held."""
        mean = self.total / self.count
        var = max(self.sq / self.count - mean * mean, 0.0)
        return (value - mean) / max(math.sqrt(var), _MIN_SD, 1e-6 * abs(mean))

    def add(self, value: float) -> None:
        """Keep ``value`` (the oldest one leaves when full)."""
        if self.count == self.size:
            old = float(self.values[self.head])
            self.total -= old
            self.sq -= old * old
        else:
            self.count += 1
        self.values[self.head] = value
        self.total += value
        self.sq += value * value
        self.head = (self.head + 1) % self.size
        if self.head == 0:  # once per lap: running sums recomputed, no drift
            held = self.values[: self.count]
            self.total, self.sq = float(held.sum()), float((held * held).sum())

    def ordered(self) -> F64:
        """The values held, oldest first."""
        if self.count < self.size:
            return self.values[: self.count].copy()
        return np.roll(self.values, -self.head)

    def load(self, values: F64) -> None:
        """Replace the values held by ``values`` (oldest first; the newest ``size`` kept)."""
        kept = np.asarray(values, np.float64)[-self.size :]
        self.values[:] = 0.0
        self.values[: kept.size] = kept
        self.count = int(kept.size)
        self.head = self.count % self.size
        self.total, self.sq = float(kept.sum()), float((kept * kept).sum())


class StepScore(NamedTuple):
    """What one point scored.

    Attributes:
        anomaly: the emitted score in [0, 1) (0 where suppressed or not yet scoring).
        fused: the fused surprise before suppression.
        model_part: surprise of the model's residual.
        novelty_part: surprise of the window's novelty.
        novelty: the raw novelty (distance to the nearest recent window; NaN while the
            memory holds no window that does not overlap the current one).
    """

    anomaly: float
    fused: float
    model_part: float
    novelty_part: float
    novelty: float


class SeriesScorer:
    """One series' streaming score state (see the module docstring)."""

    def __init__(self, settings: StreamScoring, window_len: int) -> None:
        self.settings = settings
        self.window_len = window_len
        capacity = settings.novelty_memory + 2 * window_len
        self._points = np.zeros(2 * capacity, np.float64)  # linear, compacted when full
        self._n_points = 0
        self._model = RollingTail(settings.likelihood_window)
        self._novelty = RollingTail(settings.likelihood_window)
        self._recent = RollingTail(max(settings.suppress_points - 1, 1))

    def novelty(self, window: F64) -> float:
        """Distance of ``window`` to the nearest remembered window that does not overlap it."""
        w = self.window_len
        held = self._points[: self._n_points]
        # remembered windows end at least w points before the current one's newest point
        candidates = held[-(self.settings.novelty_memory + 2 * w - 1) : self._n_points - w + 1]
        if candidates.size < w:
            return math.nan
        windows = sliding_window_view(candidates, w)
        d2 = ((windows - window) ** 2).sum(axis=1)
        return float(math.sqrt(max(float(d2.min()), 0.0)))

    def _remember(self, newest: float) -> None:
        if self._n_points == self._points.size:
            keep = self.settings.novelty_memory + 2 * self.window_len
            self._points[:keep] = self._points[self._n_points - keep : self._n_points]
            self._n_points = keep
        self._points[self._n_points] = newest
        self._n_points += 1

    def _part(self, tail: RollingTail, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        out = surprise(tail.z(value)) if tail.count >= self.settings.likelihood_min else 0.0
        tail.add(value)
        return out

    def step(self, residual: float, window: F64) -> StepScore:
        """Score one ready point: its model residual and its scaled window (oldest first)."""
        novelty = self.novelty(window)
        self._remember(float(window[-1]))
        model_part = self._part(self._model, residual)
        novelty_part = self._part(self._novelty, novelty)
        fused = 0.5 * (model_part + novelty_part)
        recent = self._recent
        peak = float(recent.values[: recent.count].max()) if recent.count else 0.0
        emitted = fused if self.settings.suppress_points == 1 or fused > peak else 0.0
        recent.add(fused)
        return StepScore(emitted, fused, model_part, novelty_part, novelty)

    def snapshot(self) -> dict[str, Any]:
        """The state as plain values (restored by :meth:`restore`)."""
        return {
            "points": self._points[: self._n_points][-self._capacity :].tolist(),
            "model": self._model.ordered().tolist(),
            "novelty": self._novelty.ordered().tolist(),
            "recent": self._recent.ordered().tolist(),
        }

    @property
    def _capacity(self) -> int:
        return self.settings.novelty_memory + 2 * self.window_len

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Put back the state of :meth:`snapshot`.

        Raises:
            ValueError: malformed values (non-finite, not numbers).
        """
        parts = {k: np.asarray(snapshot[k], np.float64) for k in ("points", "model", "novelty")}
        parts["recent"] = np.asarray(snapshot["recent"], np.float64)
        if any(p.ndim != 1 or not np.isfinite(p).all() for p in parts.values()):
            msg = "stream scoring snapshot holds non-finite or misshaped values"
            raise ValueError(msg)
        points = parts["points"][-self._capacity :]
        self._points[:] = 0.0
        self._points[: points.size] = points
        self._n_points = int(points.size)
        self._model.load(parts["model"])
        self._novelty.load(parts["novelty"])
        self._recent.load(parts["recent"])
