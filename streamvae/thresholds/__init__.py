"""Threshold calibration (a step) and decisions (pure functions)."""

from __future__ import annotations

from streamvae.thresholds.calibrate import (
    Threshold,
    calibrate_percentile,
    default_critical_percentile,
    min_calibration_size,
)
from streamvae.thresholds.decide import classify, severities

__all__ = [
    "Threshold",
    "calibrate_percentile",
    "classify",
    "default_critical_percentile",
    "min_calibration_size",
    "severities",
]
