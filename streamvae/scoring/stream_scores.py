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
2. **Tail surprise per series** (after HTM's anomaly likelihood, Ahmad et al. 2017, with
   SPOT's tail, Siffer et al. 2017): each part becomes ``-log10 p``, ``p`` its tail
   probability among the same part's last ``likelihood_window`` values on this series
   (the value itself is compared with the values before it): the empirical survival up to
   their 90th percentile, an exponential tail fitted to the excesses beyond it
   (:func:`log_tail_probability`). A Gaussian fitted to the same values (HTM's choice)
   made every burst of a bursty series a one-in-a-billion event: on the 21 NAB development
   series the empirical tail scored 64.4 / 54.0 / 70.8 (standard / low FP / low FN, mean
   of three seeds) against 62.9 / 50.3 / 69.4. ``surprise = 1 - exp(-(-log10 p) / 10)``,
   monotone, so 0.26 is ``p = 1e-3``, 0.5 is ``p ~ 1e-7``. Before ``likelihood_min``
   values the part is 0.
3. **Fusion**: the mean of the two parts' surprises.
4. **One score per incident** (``suppress_points``, ``escalation_decades``): the emitted
   score is the fused score only where it exceeds every fused score of the previous
   ``suppress_points - 1`` points of the series and, if a score was emitted among those
   points, where it is also *clearly* worse than that one: its evidence
   (:func:`decades_of`, the fused score read back as ``-log10 p``) at least
   ``escalation_decades`` higher. Else 0. A long excursion raises one alert at its onset
   and again only if it gets clearly worse, not one per point nor one per slightly higher
   point: a slowly rising excursion otherwise emits every new high (on the 21 NAB
   development series those repeats were most of the false positives; requiring half a
   decade took the score from 64.4 / 54.0 / 70.8 to 67.7 / 59.2 / 72.1, mean of three
   seeds, see the README). It depends on the past only and on no threshold, so any
   threshold an operator (or NAB's optimiser) picks sees the same rule.

Memory per series: ``novelty_memory + 2 window_len`` scaled points and a ring of
``suppress_points`` fused scores (float64), and the two parts' last ``likelihood_window``
values (:class:`RecentValues`, float32): with the defaults and 32-point windows about
140 KiB (the point memory is held twice as large to append cheaply) and a snapshot of
about 150 KB. Time per point: one ``novelty_memory x window_len`` distance computation
(about 0.1 ms) and a quantile of each part's held values (``likelihood_window``): about
0.33 ms a point in all with full memories.
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

from streamvae.scoring.tails import TAIL_LEVEL, mean_excess

F64 = npt.NDArray[np.float64]
_LOG10 = math.log(10.0)
_MAX_SCALED = 1e6  # scaled values beyond a million robust units say nothing more


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
        escalation_decades: within ``suppress_points`` of an emitted score, a higher one
            is emitted only if its evidence is this many decades of ``p`` above the emitted
            one's (0: any higher score is emitted again).
    """

    likelihood_window: int = 8640
    likelihood_min: int = 100
    novelty_memory: int = 4000
    suppress_points: int = 1000
    escalation_decades: float = 0.5

    def to_dict(self) -> dict[str, float]:
        """Plain JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> StreamScoring:
        """Inverse of :meth:`to_dict` (unknown keys are an error).

        Settings written before ``escalation_decades`` existed get its default.
        """
        counts = {k: int(v) for k, v in values.items() if k != "escalation_decades"}
        if "escalation_decades" not in values:
            return cls(**counts)
        return cls(**counts, escalation_decades=float(values["escalation_decades"]))

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
        if not 0.0 <= self.escalation_decades < math.inf:
            msg = f"invalid stream scoring escalation_decades={self.escalation_decades}"
            raise ValueError(msg)


def surprise_of(log_p: float) -> float:
    """``1 - exp(-(-log10 p) / 10)``: a tail probability as a score in [0, 1].

    Monotone: 0.26 is ``p = 1e-3``, 0.5 is ``p ~ 1e-7``.

    >>> round(surprise_of(math.log(0.1)), 4), round(surprise_of(math.log(1e-3)), 4)
    (0.0952, 0.2592)
    """
    return 1.0 - math.exp(min(log_p, 0.0) / (10.0 * _LOG10))


def decades_of(score: float) -> float:
    """Inverse of :func:`surprise_of` in decades: ``-log10 p`` for a score ``1 - p^(1/10)``.

    >>> round(decades_of(surprise_of(math.log(1e-3))), 6), decades_of(0.0)
    (3.0, 0.0)
    """
    return -10.0 * math.log1p(-min(score, 1.0 - 1e-16))


def log_tail_probability(held: F64, value: float) -> float:
    """``log p``, ``p`` the chance of a value as high as ``value`` among the ``held`` values.

    Up to the held values' ``TAIL_LEVEL`` quantile ``t`` it is the empirical survival
    ``(#{held >= value} + 1) / (n + 1)``; beyond ``t`` an exponential tail
    ``(1 - TAIL_LEVEL) exp(-(value - t) / m)``, ``m`` the mean excess of the held values
    over ``t`` (peaks over threshold with shape 0, as in SPOT, Siffer et al. 2017). Unlike a
    Gaussian fitted to the same values, it follows a bursty series' heavy tail: a burst of a
    size the series shows every day is not a one-in-a-billion event.

    >>> held = np.arange(100.0)
    >>> [round(math.exp(log_tail_probability(held, v)), 3) for v in (0.0, 50.0, 89.1, 99.0)]
    [1.0, 0.505, 0.109, 0.016]
    """
    t = float(np.quantile(held, TAIL_LEVEL))
    if value <= t:
        return math.log((np.count_nonzero(held >= value) + 1) / (held.size + 1))
    return math.log1p(-TAIL_LEVEL) - (value - t) / mean_excess(held, t)


class RecentValues:
    """The last ``size`` values of one part, in a ring (float32: a tail needs no more)."""

    __slots__ = ("count", "head", "values")

    def __init__(self, size: int) -> None:
        self.values = np.zeros(size, np.float32)
        self.head = 0
        self.count = 0

    def held(self) -> F64:
        """The values held, in no particular order, as float64."""
        return self.values[: self.count].astype(np.float64)

    def add(self, value: float) -> None:
        """Keep ``value``; a full ring forgets its oldest value."""
        self.values[self.head] = value
        self.head = (self.head + 1) % self.values.size
        self.count = min(self.count + 1, self.values.size)

    def state(self) -> str:
        """The values held, oldest first, as base64 float32."""
        ordered = (
            self.values[: self.count]
            if self.count < self.values.size
            else np.roll(self.values, -self.head)
        )
        return _encode(ordered, "<f4")

    def load(self, state: object) -> None:
        """Put back :meth:`state`.

        Raises:
            ValueError: more values than the ring holds, or not base64 of finite float32.
            TypeError: not text.
        """
        values = _decode(state, "<f4")
        if values.size > self.values.size:
            msg = "stream scoring snapshot was made with other settings"
            raise ValueError(msg)
        self.values[:] = 0.0
        self.values[: values.size] = values
        self.count = int(values.size)
        self.head = self.count % self.values.size


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
        self._model = RecentValues(settings.likelihood_window)
        self._novelty = RecentValues(settings.likelihood_window)
        self._recent = np.zeros(max(settings.suppress_points - 1, 1), np.float64)
        self._recent_head = 0
        self._since_alert = settings.suppress_points  # points since the last emitted score
        self._alert_decades = 0.0  # and that score's evidence

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

    def _part(self, tail: RecentValues, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        ready = tail.count >= self.settings.likelihood_min
        out = surprise_of(log_tail_probability(tail.held(), value)) if ready else 0.0
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
        emitted = self._emitted(fused)
        self._recent[self._recent_head] = fused
        self._recent_head = (self._recent_head + 1) % self._recent.size
        return StepScore(emitted, fused, model_part, novelty_part, novelty, ready)

    def _emitted(self, fused: float) -> float:
        """``fused`` if it opens or clearly worsens an incident, else 0 (module docstring)."""
        settings = self.settings
        self._since_alert = min(self._since_alert + 1, settings.suppress_points)
        if settings.suppress_points == 1:
            return fused
        if fused <= float(self._recent.max()):  # fused scores are >= 0: zeros are "nothing yet"
            return 0.0
        decades = decades_of(fused)
        in_incident = self._since_alert < settings.suppress_points
        if in_incident and decades < self._alert_decades + settings.escalation_decades:
            return 0.0
        self._since_alert, self._alert_decades = 0, decades
        return fused

    def snapshot(self) -> dict[str, Any]:
        """The state as plain JSON values (restored by :meth:`restore`).

        With the defaults about 150 KB of JSON once the memory is full: the two parts'
        recent values (float32, base64), the novelty memory (float64), the suppression
        ring and the last emitted score's age and evidence.
        """
        points = self._points[: self._n_points][-self._capacity :]
        return {
            "points": _encode(points),
            "model": self._model.state(),
            "novelty": self._novelty.state(),
            "recent": _encode(np.roll(self._recent, -self._recent_head)),
            "alert": [self._since_alert, self._alert_decades],
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
        since_alert, alert_decades = self._restored_alert(snapshot.get("alert"))
        self._model.load(snapshot["model"])
        self._novelty.load(snapshot["novelty"])
        self._points[:] = 0.0
        self._points[: points.size] = points
        self._n_points = int(points.size)
        self._recent[:] = recent
        self._recent_head = 0
        self._since_alert, self._alert_decades = since_alert, alert_decades

    def _restored_alert(self, alert: object) -> tuple[int, float]:
        """The snapshot's ``[points since the last emitted score, its evidence]``.

        A snapshot from before the escalation rule has none: no incident is open.

        Raises:
            ValueError: not two finite non-negative numbers.
        """
        if alert is None:
            return self.settings.suppress_points, 0.0
        msg = f"stream scoring snapshot alert must be [points, decades], got {alert!r:.80}"
        if (
            not isinstance(alert, list)
            or len(alert) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in alert)
        ):
            raise ValueError(msg)
        try:
            since, decades = float(alert[0]), float(alert[1])
        except OverflowError as exc:  # an integer beyond float range
            raise ValueError(msg) from exc
        if not (0.0 <= since < math.inf and 0.0 <= decades < math.inf):
            raise ValueError(msg)
        return min(int(since), self.settings.suppress_points), decades


def _encode(values: F64 | npt.NDArray[np.float32], dtype: str = "<f8") -> str:
    """Values as base64 text of ``dtype`` (exact, a third the size of JSON numbers)."""
    return base64.b64encode(np.ascontiguousarray(values, dtype).tobytes()).decode("ascii")


def _decode(text: object, dtype: str = "<f8") -> F64:
    """Inverse of :func:`_encode`.

    Raises:
        ValueError: not base64 of finite ``dtype`` values.
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
    width = np.dtype(dtype).itemsize
    if len(raw) % width:
        msg = f"stream scoring snapshot array is not a whole number of {width}-byte floats"
        raise ValueError(msg)
    values = np.frombuffer(raw, dtype).astype(np.float64)
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
        floats = 2 * (settings.novelty_memory + 2 * w) + settings.suppress_points
        tails = 2 * 4 * settings.likelihood_window  # float32 rings
        return len(self._scorers) * (8 * floats + tails + 600)

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
