"""Threshold calibration (steps), decisions and drift statistics (pure functions)."""

from __future__ import annotations

from streamvae.thresholds.calibrate import (
    Bootstrap,
    Threshold,
    calibrate_fpr,
    calibrate_percentile,
    check_fpr,
    conformal_quantile,
    fpr_for_alert_budget,
    min_calibration_size,
    min_size_for_fpr,
    p_values,
    validated_scores,
)
from streamvae.thresholds.drift import DriftMonitor, DriftSnapshot, ks_statistic, psi
from streamvae.thresholds.hygiene import Admitted, AlertGate, HygienePolicy, bounded_key
from streamvae.thresholds.labels import PRCurve, calibrate_for_target, precision_recall_curve
from streamvae.thresholds.sets import (
    DEFAULT_BANDS,
    Decisions,
    ThresholdSet,
    calibrate_segments,
    check_bands,
)
from streamvae.thresholds.spec import CalibrationSpec, calibrate_one, calibrate_set
from streamvae.thresholds.tail import calibrate_pot

__all__ = [
    "DEFAULT_BANDS",
    "Admitted",
    "AlertGate",
    "Bootstrap",
    "CalibrationSpec",
    "Decisions",
    "DriftMonitor",
    "DriftSnapshot",
    "HygienePolicy",
    "PRCurve",
    "Threshold",
    "ThresholdSet",
    "bounded_key",
    "calibrate_for_target",
    "calibrate_fpr",
    "calibrate_one",
    "calibrate_percentile",
    "calibrate_pot",
    "calibrate_segments",
    "calibrate_set",
    "check_bands",
    "check_fpr",
    "conformal_quantile",
    "fpr_for_alert_budget",
    "ks_statistic",
    "min_calibration_size",
    "min_size_for_fpr",
    "p_values",
    "precision_recall_curve",
    "psi",
    "validated_scores",
]
