"""What a KPI window model reads beside the values: the interval, calendar, per-series scale.

The windows themselves (a regular grid, missing-point masks) are kept per series by
:mod:`streamvae.data.series_state`; here are the pure pieces they are made with: the
sampling interval of a series, the calendar features of a time stamp, and the robust
per-series scaler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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
