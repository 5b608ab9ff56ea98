"""Per-series streaming scores for KPI points that mean the same on every series. Pure numpy.

A window model's raw score of a point (its residual from the model's expectation) has a
different scale on every series: a fleet-wide threshold on it fires all day on one noisy
series and never on a quiet one. :class:`SeriesScorer` turns each point into an anomaly
score in [0, 1] with one meaning everywhere, from what that series has shown so far, in
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

Memory per series: ``novelty_memory + 2 window_len`` scaled points, block summaries of the
two parts' recent values (:class:`RollingTail`) and a ring of ``suppress_points`` fused
scores, all float64: with the defaults and 32-point windows about 80 KiB (the point memory
is held twice as large to append cheaply) and a 65 KB snapshot. Time per point: one
``novelty_memory x window_len`` distance computation (about 0.1 ms) plus O(1) updates.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

F64 = npt.NDArray[np.float64]
_LOG10 = math.log(10.0)
_MIN_SD = 1e-9
_MAX_SCALED = 1e6  # scaled values beyond a million robust units say nothing more
TAIL_BLOCK = 72
"""Values per block summary of a :class:`RollingTail`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamScoring:
    """How raw KPI scores become comparable anomaly scores (see the module docstring).

    Attributes:
        likelihood_window: past values of each part the tail is fitted to (8,640: 30 days
            of 5-minute points, HTM's default).
        likelihood_min: values needed before a part scores. A new series is warming up
            (not scored) for its first ``2 window_len - 1 + likelihood_min`` ready windows:
            the novelty needs one window that does not overlap the current one, then both
            parts need ``likelihood_min`` values to compare with.
        novelty_memory: recent points whose windows the current window is compared with.
        suppress_points: a fused score is emitted only when it is the highest of this many
            points (1: every score is emitted).
    """

    likelihood_window: int = 8640
    likelihood_min: int = 100
    novelty_memory: int = 4000
    suppress_points: int = 1000

    def to_dict(self) -> dict[str, int]:
        """Plain JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StreamScoring:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        return cls(**{k: int(v) for k, v in values.items()})

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
    """Mean and spread of one part's recent values, in block summaries (bounded state).

    Values are summed in blocks of ``block``; the statistics cover the last
    ``size // block - 1`` full blocks plus the block being filled, i.e. the latest ``count``
    values with ``size - 2 block < count < size`` once the stream is that long. The state is
    ``3 (size // block)`` numbers, whatever ``size`` is.
    """

    __slots__ = ("block", "blocks", "count", "current", "head", "sq", "total")

    def __init__(self, size: int, block: int = TAIL_BLOCK) -> None:
        self.block = max(1, min(block, size))
        n_blocks = max(1, size // self.block - 1) if size > self.block else 1
        self.blocks = np.zeros((n_blocks, 3), np.float64)  # sum, sum of squares, count
        self.head = 0
        self.current = np.zeros(3, np.float64)
        self.count = 0
        self.total = 0.0
        self.sq = 0.0

    def z(self, value: float) -> float:
        """How many standard deviations ``value`` lies above the values held."""
        mean, sd = self.mean_sd()
        return (value - mean) / sd

    def mean_sd(self) -> tuple[float, float]:
        """Mean and (floored) standard deviation of the values held."""
        mean = self.total / self.count
        var = max(self.sq / self.count - mean * mean, 0.0)
        return mean, max(math.sqrt(var), _MIN_SD, 1e-6 * abs(mean))

    def add(self, value: float) -> None:
        """Keep ``value``; a full block replaces the oldest one."""
        self.current += (value, value * value, 1.0)
        if self.current[2] >= self.block:
            self.blocks[self.head] = self.current
            self.head = (self.head + 1) % self.blocks.shape[0]
            self.current = np.zeros(3, np.float64)
        self._totals()

    def _totals(self) -> None:
        held = self.blocks.sum(axis=0) + self.current
        self.total, self.sq, self.count = float(held[0]), float(held[1]), int(held[2])

    def state(self) -> list[list[float]]:
        """The block summaries, oldest first, then the block being filled."""
        ordered = np.roll(self.blocks, -self.head, axis=0)
        return [*ordered.tolist(), self.current.tolist()]

    def load(self, state: list[list[float]]) -> None:
        """Put back :meth:`state`.

        Raises:
            ValueError: another number of blocks, or non-finite / negative values.
        """
        values = np.asarray(state, np.float64)
        if values.shape != (self.blocks.shape[0] + 1, 3) or not np.isfinite(values).all():
            msg = "stream scoring snapshot holds non-finite or misshaped block summaries"
            raise ValueError(msg)
        if (values[:, 2] < 0).any() or values[-1, 2] >= self.block:
            msg = "stream scoring snapshot holds impossible block counts"
            raise ValueError(msg)
        self.blocks[:] = values[:-1]
        self.current = values[-1].copy()
        self.head = 0
        self._totals()


class StepScore(NamedTuple):
    """What one point scored.

    Attributes:
        anomaly: the emitted score in [0, 1] (0 where suppressed or not yet scoring).
        fused: the fused surprise before suppression.
        model_part: surprise of the model's residual.
        novelty_part: surprise of the window's novelty.
        novelty: the raw novelty (distance to the nearest recent window; NaN while the
            memory holds no window that does not overlap the current one).
        ready: both parts had ``likelihood_min`` earlier values to compare with (before
            that the series is still warming up and the scores are 0).
    """

    anomaly: float
    fused: float
    model_part: float
    novelty_part: float
    novelty: float
    ready: bool


class SeriesScorer:
    """One series' streaming score state (see the module docstring)."""

    def __init__(self, settings: StreamScoring, window_len: int) -> None:
        self.settings = settings
        self.window_len = window_len
        self._points = np.zeros(2 * self._capacity, np.float64)  # linear, compacted when full
        self._n_points = 0
        self._model = RollingTail(settings.likelihood_window)
        self._novelty = RollingTail(settings.likelihood_window)
        self._recent = np.zeros(max(settings.suppress_points - 1, 1), np.float64)
        self._recent_head = 0

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
            keep = self._capacity
            self._points[:keep] = self._points[self._n_points - keep : self._n_points]
            self._n_points = keep
        self._points[self._n_points] = newest
        self._n_points += 1

    def _part(self, tail: RollingTail, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        out = surprise(tail.z(value)) if tail.count >= self.settings.likelihood_min else 0.0
        # uncapped on purpose: after an incident the tail widens and the series' aftershocks
        # alert less (capping values at mean + 6 sd cost 3.5-6 NAB points on every seed)
        tail.add(value)
        return out

    def step(self, residual: float, window: F64) -> StepScore:
        """Score one ready point: its model residual and its scaled window (oldest first).

        Non-finite or absurd inputs (beyond a million robust units) are clipped, so one
        wild value cannot put an infinity in the series' memory; it still widens the
        tails for a while, as any incident does.
        """
        window = np.clip(np.nan_to_num(window, nan=0.0), -_MAX_SCALED, _MAX_SCALED)
        residual = min(residual, _MAX_SCALED) if residual == residual else math.nan
        novelty = self.novelty(window)
        self._remember(float(window[-1]))
        minimum = self.settings.likelihood_min
        ready = self._model.count >= minimum and self._novelty.count >= minimum
        model_part = self._part(self._model, residual)
        novelty_part = self._part(self._novelty, novelty)
        fused = 0.5 * (model_part + novelty_part)
        peak = float(self._recent.max())  # fused scores are >= 0: zeros are "nothing yet"
        emitted = fused if self.settings.suppress_points == 1 or fused > peak else 0.0
        self._recent[self._recent_head] = fused
        self._recent_head = (self._recent_head + 1) % self._recent.size
        return StepScore(emitted, fused, model_part, novelty_part, novelty, ready)

    def snapshot(self) -> dict[str, Any]:
        """The state as plain JSON values (restored by :meth:`restore`).

        With the defaults about 65 KB of JSON once the memory is full: the novelty memory
        (float64, base64) and the suppression ring dominate; the tails are block summaries.
        """
        points = self._points[: self._n_points][-self._capacity :]
        return {
            "points": _encode(points),
            "model": self._model.state(),
            "novelty": self._novelty.state(),
            "recent": _encode(np.roll(self._recent, -self._recent_head)),
        }

    @property
    def _capacity(self) -> int:
        return self.settings.novelty_memory + 2 * self.window_len

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Put back the state of :meth:`snapshot` (same settings and window length).

        Raises:
            ValueError: malformed or made with other settings.
            KeyError: a part is missing.
            TypeError: a part of the wrong type.
        """
        points = _decode(snapshot["points"])
        recent = _decode(snapshot["recent"])
        if points.size > self._capacity or recent.size != self._recent.size:
            msg = "stream scoring snapshot was made with other settings"
            raise ValueError(msg)
        if (recent < 0).any():
            msg = "stream scoring snapshot holds negative scores"
            raise ValueError(msg)
        self._model.load(snapshot["model"])
        self._novelty.load(snapshot["novelty"])
        self._points[:] = 0.0
        self._points[: points.size] = points
        self._n_points = int(points.size)
        self._recent[:] = recent
        self._recent_head = 0


def _encode(values: F64) -> str:
    """float64 values as base64 text (exact, a third the size of JSON numbers)."""
    return base64.b64encode(np.ascontiguousarray(values, "<f8").tobytes()).decode("ascii")


def _decode(text: object) -> F64:
    """Inverse of :func:`_encode`.

    Raises:
        ValueError: not base64 of finite float64 values.
        TypeError: not text.
    """
    if not isinstance(text, str):
        msg = "stream scoring snapshot arrays must be base64 text"
        raise TypeError(msg)
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        msg = f"stream scoring snapshot array is not base64: {exc}"
        raise ValueError(msg) from exc
    if len(raw) % 8:
        msg = "stream scoring snapshot array is not float64"
        raise ValueError(msg)
    values = np.frombuffer(raw, "<f8").astype(np.float64)
    if not np.isfinite(values).all():
        msg = "stream scoring snapshot holds non-finite values"
        raise ValueError(msg)
    return values


class StreamBatch(NamedTuple):
    """A batch of points' :class:`StepScore` fields as ``(n,)`` arrays."""

    anomaly: F64
    fused: F64
    model_part: F64
    novelty_part: F64
    ready: npt.NDArray[np.bool_]


class StreamScorers:
    """The :class:`SeriesScorer` of every series, created on a series' first scored point.

    The caller bounds the number of series (it drops the series its window store evicts).
    """

    def __init__(self, settings: StreamScoring, window_len: int) -> None:
        self.settings = settings
        self.window_len = window_len
        self._scorers: dict[str, SeriesScorer] = {}

    def __len__(self) -> int:
        return len(self._scorers)

    @property
    def memory_bytes(self) -> int:
        """Approximate memory held by the series' stream state."""
        settings, w = self.settings, self.window_len
        blocks = 2 * 3 * (settings.likelihood_window // TAIL_BLOCK + 1)
        floats = 2 * (settings.novelty_memory + 2 * w) + settings.suppress_points + blocks
        return len(self._scorers) * (8 * floats + 600)

    def step(
        self, series: Sequence[str], residuals: F64, windows: npt.NDArray[np.floating[Any]]
    ) -> StreamBatch:
        """Score points in the given order (a series' points must come oldest first).

        Args:
            series: each point's series id.
            residuals: ``(n,)`` the model's residual of each point.
            windows: ``(n, window_len)`` each point's scaled window, oldest first.
        """
        out = np.zeros((5, len(series)), np.float64)
        for i, name in enumerate(series):
            scorer = self._scorers.get(name)
            if scorer is None:
                scorer = self._scorers[name] = SeriesScorer(self.settings, self.window_len)
            step = scorer.step(float(residuals[i]), np.asarray(windows[i], np.float64))
            out[:, i] = step.anomaly, step.fused, step.model_part, step.novelty_part, step.ready
        return StreamBatch(out[0], out[1], out[2], out[3], out[4] > 0)

    def drop(self, series: str) -> None:
        """Forget a series (evicted, or its partition moved away)."""
        self._scorers.pop(series, None)

    def snapshot(self, series: str) -> dict[str, Any] | None:
        """A series' state (``None`` before its first scored point)."""
        scorer = self._scorers.get(series)
        return None if scorer is None else scorer.snapshot()

    def restore(self, series: str, snapshot: dict[str, Any]) -> None:
        """Put back a series' state.

        Raises:
            ValueError: malformed, or made with other settings.
            KeyError: a part is missing.
        """
        scorer = SeriesScorer(self.settings, self.window_len)
        scorer.restore(snapshot)
        self._scorers[series] = scorer
