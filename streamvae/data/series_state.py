"""Bounded sliding-window state per KPI series, as the consumer keeps it. Pure: no I/O, no clock.

Every series lives on a grid of ``interval_ms``. A point is placed on the slot nearest its
timestamp, relative to the series' newest slot:

* **later slot**: the window shifts; skipped slots become *missing* (mask 0), never zeros
  that pretend to be observations. A gap longer than ``max_gap_slots`` restarts the series
  (the old window says nothing about now): it warms up again.
* **same slot** (duplicate timestamp) or **earlier slot** (out of order): rejected, the state
  unchanged; the caller dead-letters or counts the point. Replaying points the state has
  already absorbed therefore changes nothing.

A series is **warming up** until ``window_len`` slots have passed since its first point; then
its window is **ready** when at least ``min_observed`` of the slots were observed, else
**sparse**. Only a ready window is scored: a series the detector cannot score is never
reported as normal.

Memory is bounded: at most ``max_series`` live series (the least recently updated is evicted
first) and :meth:`WindowStore.evict_idle` drops series silent for a TTL.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
PointStatus = Literal["ready", "warming_up", "sparse", "duplicate", "out_of_order"]
POINT_STATUSES: tuple[PointStatus, ...] = (
    "ready",
    "warming_up",
    "sparse",
    "duplicate",
    "out_of_order",
)
# bytes per series beyond its two buffers: dict entry, object, ints (measured order of size)
_SERIES_OVERHEAD_BYTES = 400


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowSpec:
    """The window every series keeps.

    Attributes:
        window_len: slots per window.
        interval_ms: the series' sampling interval.
        max_gap_slots: a gap of more slots restarts the series (default: ``window_len``).
        min_observed: least share of observed slots for a window to be scored.
    """

    window_len: int
    interval_ms: int
    max_gap_slots: int = 0
    min_observed: float = 0.5

    def __post_init__(self) -> None:
        if self.window_len < 2 or self.interval_ms < 1 or self.max_gap_slots < 0:
            msg = (
                f"invalid window spec window_len={self.window_len}, "
                f"interval_ms={self.interval_ms}, max_gap_slots={self.max_gap_slots}"
            )
            raise ValueError(msg)
        if not 0.0 < self.min_observed <= 1.0:
            msg = f"min_observed must be in (0, 1], got {self.min_observed}"
            raise ValueError(msg)

    @property
    def gap_limit(self) -> int:
        """The longest gap (in slots) that keeps the window."""
        return self.max_gap_slots or self.window_len

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "window_len": self.window_len,
            "interval_ms": self.interval_ms,
            "max_gap_slots": self.max_gap_slots,
            "min_observed": self.min_observed,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WindowSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            window_len=int(values["window_len"]),
            interval_ms=int(values["interval_ms"]),
            max_gap_slots=int(values.get("max_gap_slots", 0)),
            min_observed=float(values.get("min_observed", 0.5)),
        )


class Push(NamedTuple):
    """What one point did.

    Attributes:
        status: see :data:`PointStatus`.
        values: ``(window_len,)`` raw values, oldest first (0 where missing), when ready.
        mask: ``(window_len,)`` 1.0 where observed, when ready.
        start_ts: timestamp of the window's oldest slot.
        end_ts: timestamp of the slot the point landed on.
        restarted: the point came after a gap too long to keep the window.
    """

    status: PointStatus
    values: F64 | None = None
    mask: F64 | None = None
    start_ts: int = 0
    end_ts: int = 0
    restarted: bool = False


class _Series:
    """One series' ring buffers (oldest slot at ``head``)."""

    __slots__ = ("filled", "head", "last_slot_ts", "mask", "seen", "values")

    def __init__(self, window_len: int, ts: int) -> None:
        self.values = np.zeros(window_len, np.float64)
        self.mask = np.zeros(window_len, np.float64)
        self.head = 0
        self.filled = 0
        self.last_slot_ts = ts
        self.seen = 0

    def advance(self, slots: int, value: float) -> None:
        """Move ``slots`` forward: ``slots - 1`` missing slots, then ``value``."""
        n = self.values.size
        for _ in range(min(slots - 1, n)):
            self.values[self.head] = 0.0
            self.mask[self.head] = 0.0
            self.head = (self.head + 1) % n
        self.values[self.head] = value
        self.mask[self.head] = 1.0
        self.head = (self.head + 1) % n
        self.filled = min(self.filled + slots, n)

    def window(self) -> tuple[F64, F64]:
        order = np.roll(np.arange(self.values.size), -self.head)
        return self.values[order], self.mask[order]


class WindowStore:
    """The windows of every live series (see the module docstring for the rules)."""

    def __init__(self, spec: WindowSpec, *, max_series: int = 100_000) -> None:
        if max_series < 1:
            msg = f"max_series must be >= 1, got {max_series}"
            raise ValueError(msg)
        self.spec = spec
        self.max_series = max_series
        self._series: OrderedDict[str, _Series] = OrderedDict()
        self.evicted_capacity = 0
        self.evicted_idle = 0
        self._evicted: list[str] = []  # since the last drain_evicted()

    def __len__(self) -> int:
        return len(self._series)

    def __contains__(self, series: str) -> bool:
        return series in self._series

    @property
    def memory_bytes(self) -> int:
        """Approximate memory held by the windows (buffers plus per-series overhead)."""
        per_series = 2 * 8 * self.spec.window_len + _SERIES_OVERHEAD_BYTES
        return len(self._series) * per_series

    def push(self, series: str, ts: int, value: float, seen_ms: int = 0) -> Push:
        """Add one point; ``seen_ms`` is when it was seen (for :meth:`evict_idle`)."""
        spec = self.spec
        state = self._series.get(series)
        restarted = False
        if state is not None:
            slots = round((ts - state.last_slot_ts) / spec.interval_ms)
            if slots == 0:
                return Push("duplicate", end_ts=state.last_slot_ts)
            if slots < 0:
                return Push("out_of_order", end_ts=state.last_slot_ts)
            if slots > spec.gap_limit:
                restarted, state = True, None
        if state is None:
            state = self._new(series, ts)
            state.advance(1, value)
        else:
            state.advance(slots, value)
            state.last_slot_ts += slots * spec.interval_ms
        state.seen = seen_ms
        self._series.move_to_end(series)
        end_ts = state.last_slot_ts
        start_ts = end_ts - (spec.window_len - 1) * spec.interval_ms
        if state.filled < spec.window_len:
            return Push("warming_up", start_ts=start_ts, end_ts=end_ts, restarted=restarted)
        values, mask = state.window()
        if mask.mean() < spec.min_observed:
            return Push("sparse", start_ts=start_ts, end_ts=end_ts, restarted=restarted)
        return Push("ready", values, mask, start_ts, end_ts, restarted)

    def _new(self, series: str, ts: int) -> _Series:
        while len(self._series) >= self.max_series:
            name, _ = self._series.popitem(last=False)
            self._evicted.append(name)
            self.evicted_capacity += 1
        state = _Series(self.spec.window_len, ts)
        self._series[series] = state
        return state

    def evict_idle(self, now_ms: int, ttl_ms: int) -> int:
        """Drop series not updated since ``now_ms - ttl_ms``; returns how many."""
        cutoff = now_ms - ttl_ms
        stale = [name for name, s in self._series.items() if s.seen < cutoff]
        for name in stale:
            del self._series[name]
        self._evicted.extend(stale)
        self.evicted_idle += len(stale)
        return len(stale)

    def drain_evicted(self) -> list[str]:
        """The series evicted (capacity or idleness) since the last call, oldest first."""
        evicted, self._evicted = self._evicted, []
        return evicted

    def snapshot(self, series: str) -> dict[str, Any] | None:
        """The state of one series as plain values (``None`` if it is not live)."""
        state = self._series.get(series)
        if state is None:
            return None
        values, mask = state.window()
        return {
            "last_ts": state.last_slot_ts,
            "filled": state.filled,
            "values": [float(v) for v in values],
            "mask": [int(m) for m in mask],
        }

    def restore(self, series: str, snapshot: dict[str, Any], seen_ms: int = 0) -> None:
        """Put back a series from :meth:`snapshot` (replacing any live state).

        Raises:
            ValueError: a snapshot for another window length, or malformed.
        """
        values = np.asarray(snapshot["values"], np.float64)
        mask = np.asarray(snapshot["mask"], np.float64)
        n = self.spec.window_len
        if values.shape != (n,) or mask.shape != (n,) or not np.isfinite(values).all():
            msg = f"snapshot of {series!r} does not fit a window of {n} slots"
            raise ValueError(msg)
        state = self._new(series, int(snapshot["last_ts"])) if series not in self else None
        if state is None:
            state = self._series[series]
        state.values[:] = values
        state.mask[:] = (mask > 0).astype(np.float64)
        state.head = 0
        state.filled = max(0, min(int(snapshot["filled"]), n))
        state.last_slot_ts = int(snapshot["last_ts"])
        state.seen = seen_ms
        self._series.move_to_end(series)

    def drop(self, series: str) -> None:
        """Forget one series (e.g. its partition moved to another consumer)."""
        self._series.pop(series, None)

    def names(self) -> list[str]:
        """The live series, least recently updated first."""
        return list(self._series)


def replay(
    spec: WindowSpec, series: Sequence[str], ts_ms: Sequence[int], values: Sequence[float]
) -> list[Push]:
    """Push points, in the given order, through a fresh store holding every series.

    What the consumer would do with the same points (used to train on history, to score it
    offline and to run NAB), so offline and online windows are the same windows.
    """
    store = WindowStore(spec, max_series=max(1, len(set(series))))
    return [
        store.push(name, int(t), float(v)) for name, t, v in zip(series, ts_ms, values, strict=True)
    ]
