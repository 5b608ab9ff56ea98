"""Pure sliding windows over KPI series: a regular time grid, missing-point masks, scaling.

A KPI series is sampled every ``interval_ms``. Points are placed on that grid; a slot with
no point is *missing* (mask 0, value 0 after scaling) — never silently zero-filled as if it
had been observed. Windows of ``window_len`` slots end at every ``stride``-th slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 24 * MS_PER_HOUR
CALENDAR_FEATURES = ("hour_sin", "hour_cos", "weekday_sin", "weekday_cos")


def infer_interval_ms(ts_ms: I64) -> int:
    """The sampling interval: the median gap between consecutive timestamps.

    Raises:
        ValueError: fewer than two points, or a non-positive median gap.
    """
    if ts_ms.size < 2:
        msg = "need at least two points to infer the sampling interval"
        raise ValueError(msg)
    gap = int(np.median(np.diff(ts_ms)))
    if gap <= 0:
        msg = f"timestamps must increase; median gap is {gap} ms"
        raise ValueError(msg)
    return gap


class Grid(NamedTuple):
    """A series on its regular grid.

    Attributes:
        start_ms: timestamp of slot 0.
        values: ``(m,)`` float64 values, 0 where missing.
        mask: ``(m,)`` bool, True where a point was observed.
        duplicates: points dropped because their slot already had one.
    """

    start_ms: int
    values: F64
    mask: npt.NDArray[np.bool_]
    duplicates: int

    def timestamps(self, interval_ms: int) -> I64:
        """``(m,)`` the timestamp of every slot."""
        return self.start_ms + np.arange(self.values.size, dtype=np.int64) * interval_ms


def to_grid(ts_ms: I64, values: F64, interval_ms: int) -> Grid:
    """Place sorted points on the grid starting at the first one (nearest slot; first wins).

    Raises:
        ValueError: empty, unsorted or mismatched inputs, or a non-positive interval.
    """
    if interval_ms <= 0:
        msg = f"interval_ms must be positive, got {interval_ms}"
        raise ValueError(msg)
    if ts_ms.size == 0 or ts_ms.shape != values.shape:
        msg = f"need matching non-empty timestamps and values, got {ts_ms.shape}, {values.shape}"
        raise ValueError(msg)
    if (np.diff(ts_ms) < 0).any():
        msg = "timestamps must be sorted"
        raise ValueError(msg)
    slots = np.rint((ts_ms - ts_ms[0]) / interval_ms).astype(np.int64)
    first = np.ones(slots.size, bool)
    first[1:] = slots[1:] != slots[:-1]
    m = int(slots[-1]) + 1
    grid_values = np.zeros(m, np.float64)
    mask = np.zeros(m, bool)
    observed = values[first]
    finite = np.isfinite(observed)
    grid_values[slots[first][finite]] = observed[finite]
    mask[slots[first][finite]] = True
    return Grid(int(ts_ms[0]), grid_values, mask, int((~first).sum()))


class Windows(NamedTuple):
    """Windows cut from a grid.

    Attributes:
        values: ``(k, window_len)`` float32 (missing slots are 0).
        mask: ``(k, window_len)`` float32, 1 where observed.
        end: ``(k,)`` the grid index of each window's newest slot.
    """

    values: F32
    mask: F32
    end: I64


def sliding_windows(
    values: F64, mask: npt.NDArray[np.bool_], window_len: int, stride: int = 1
) -> Windows:
    """Every window of ``window_len`` slots ending at slot ``window_len - 1 + j * stride``.

    >>> w = sliding_windows(np.arange(5.0), np.ones(5, bool), 3, 2)
    >>> w.values.tolist(), w.end.tolist()
    ([[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]], [2, 4])

    Raises:
        ValueError: non-positive ``window_len`` or ``stride``.
    """
    if window_len < 1 or stride < 1:
        msg = f"window_len and stride must be >= 1, got {window_len}, {stride}"
        raise ValueError(msg)
    if values.size < window_len:
        empty = np.zeros((0, window_len), np.float32)
        return Windows(empty, empty.copy(), np.zeros(0, np.int64))
    view = np.lib.stride_tricks.sliding_window_view
    v = view(np.where(mask, values, 0.0), window_len)[::stride]
    m = view(mask, window_len)[::stride]
    end = np.arange(window_len - 1, values.size, stride, dtype=np.int64)
    return Windows(v.astype(np.float32), m.astype(np.float32), end)


def calendar_features(ts_ms: I64, utc_offset_ms: int = 0) -> F32:
    """``(n, 4)`` hour of day and day of week on the unit circle (sin, cos each).

    >>> [round(float(v), 3) for v in calendar_features(np.array([0], np.int64))[0]]  # Thu 00:00
    [0.0, 1.0, 0.434, -0.901]
    """
    local = ts_ms.astype(np.int64) + utc_offset_ms
    hour = (local % MS_PER_DAY) / MS_PER_HOUR
    weekday = ((local // MS_PER_DAY) + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    a = 2.0 * math.pi * hour / 24.0
    b = 2.0 * math.pi * weekday / 7.0
    return np.stack([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], axis=1).astype(np.float32)


@dataclass(frozen=True, slots=True)
class SeriesScaler:
    """Robust per-series scaling: ``(value - center) / scale``.

    ``center`` is the median of the observed training values; ``scale`` is the
    interquartile range / 1.349 (the standard deviation of a normal sample), falling back to
    the standard deviation, then to 1, for flat series.
    """

    center: float
    scale: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.center) and math.isfinite(self.scale) and self.scale > 0):
            msg = f"invalid series scaler center={self.center}, scale={self.scale}"
            raise ValueError(msg)

    @classmethod
    def fit(cls, values: F64) -> SeriesScaler:
        """Fit on observed values.

        Raises:
            ValueError: no finite value.
        """
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            msg = "cannot scale a series with no observed value"
            raise ValueError(msg)
        q1, median, q3 = np.quantile(finite, [0.25, 0.5, 0.75])
        scale = float(q3 - q1) / 1.349
        if not scale > 1e-9 * max(1.0, abs(float(median))):
            scale = float(finite.std())
        if not scale > 1e-9 * max(1.0, abs(float(median))):
            scale = 1.0
        return cls(float(median), scale)

    def transform(self, values: F64) -> F64:
        """Scaled values."""
        return (values - self.center) / self.scale

    def inverse(self, values: F64) -> F64:
        """Values back in the series' units."""
        return values * self.scale + self.center

    def to_dict(self) -> dict[str, float]:
        """Plain JSON-ready values."""
        return {"center": self.center, "scale": self.scale}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SeriesScaler:
        """Inverse of :meth:`to_dict`."""
        return cls(float(values["center"]), float(values["scale"]))
