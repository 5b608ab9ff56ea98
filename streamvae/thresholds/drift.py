"""Drift of live scores from the calibration scores: KS statistic, PSI and the live alert rate.

When normal traffic moves, a threshold calibrated on yesterday's normals no longer means the
false-alarm rate it was chosen for. These statistics compare a rolling window of live scores
with the calibration reference; the service exports them as gauges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
_FLOOR = 1e-4  # PSI of an empty bin would be infinite


def ks_statistic(sample: F64, sorted_reference: F64) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``sup |F_sample - F_reference|``.

    >>> ks_statistic(np.array([5.0, 6.0]), np.array([1.0, 2.0]))
    1.0
    """
    if sample.size == 0 or sorted_reference.size == 0:
        return float("nan")
    s = np.sort(sample)
    grid = np.concatenate([s, sorted_reference])
    f_s = np.searchsorted(s, grid, side="right") / s.size
    f_r = np.searchsorted(sorted_reference, grid, side="right") / sorted_reference.size
    return float(np.max(np.abs(f_s - f_r)))


def psi(sample: F64, sorted_reference: F64, n_bins: int = 10) -> float:
    """Population stability index over the reference's quantile bins.

    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
    """
    if sample.size == 0 or sorted_reference.size == 0:
        return float("nan")
    edges = np.unique(np.quantile(sorted_reference, np.linspace(0, 1, n_bins + 1)[1:-1]))
    expected = np.bincount(
        np.searchsorted(edges, sorted_reference, side="right"), minlength=edges.size + 1
    )
    actual = np.bincount(np.searchsorted(edges, sample, side="right"), minlength=edges.size + 1)
    e = np.maximum(expected / sorted_reference.size, _FLOOR)
    a = np.maximum(actual / sample.size, _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True, slots=True)
class DriftSnapshot:
    """Drift statistics of the current window (NaN until ``min_count`` scores were seen)."""

    count: int
    ks: float
    psi: float
    alert_rate: float
    expected_alert_rate: float


class DriftMonitor:
    """A rolling window of the last ``window`` live scores and alert flags (no I/O, no clock)."""

    def __init__(
        self,
        sorted_reference: F64,
        expected_alert_rate: float,
        *,
        window: int = 5_000,
        min_count: int = 200,
    ) -> None:
        if window < 1 or min_count < 1:
            msg = f"window ({window}) and min_count ({min_count}) must be >= 1"
            raise ValueError(msg)
        self.reference = sorted_reference
        self.expected_alert_rate = expected_alert_rate
        self.min_count = min_count
        self._scores = np.zeros(window)
        self._alerts = np.zeros(window, dtype=bool)
        self._next = 0
        self._count = 0

    def update(self, scores: F64, alerted: npt.NDArray[np.bool_]) -> None:
        """Add a batch of live scores and whether each alerted."""
        window = self._scores.size
        scores, alerted = scores[-window:], alerted[-window:]
        idx = (self._next + np.arange(scores.size)) % window
        self._scores[idx] = scores
        self._alerts[idx] = alerted
        self._next = (self._next + scores.size) % window
        self._count = min(self._count + scores.size, window)

    def snapshot(self) -> DriftSnapshot:
        """The statistics of the window now."""
        if self._count < self.min_count:
            nan = float("nan")
            return DriftSnapshot(self._count, nan, nan, nan, self.expected_alert_rate)
        live = self._scores[: self._count]
        return DriftSnapshot(
            count=self._count,
            ks=ks_statistic(live, self.reference),
            psi=psi(live, self.reference),
            alert_rate=float(self._alerts[: self._count].mean()),
            expected_alert_rate=self.expected_alert_rate,
        )
