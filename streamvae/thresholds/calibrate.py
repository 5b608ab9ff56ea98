"""Threshold calibration: a percentile of scores on held-out normal data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from streamvae.types import SCORE_KINDS, ScoreKind


@dataclass(frozen=True, slots=True, kw_only=True)
class Threshold:
    """A calibrated decision threshold: a record is anomalous iff ``score > value``.

    Attributes:
        value: the threshold on the score.
        score_kind: which score it applies to.
        method: how it was derived (``"percentile"``).
        percentile: the percentile of normal calibration scores it sits at.
        n_calibration: number of normal records it was calibrated on.
        expected_alert_rate: nominal false-alarm rate on normal traffic, ``1 - percentile/100``.
        empirical_alert_rate: fraction of the calibration scores strictly above ``value``.
        critical_value: optional higher threshold for ``critical`` severity.
        critical_percentile: the percentile ``critical_value`` sits at.
        model_name: registered model the threshold was calibrated for ("" if none).
        model_version: its version ("" if none).
        created_at: ISO-8601 UTC time of calibration.
    """

    value: float
    score_kind: ScoreKind
    method: str = "percentile"
    percentile: float
    n_calibration: int
    expected_alert_rate: float
    empirical_alert_rate: float
    critical_value: float | None = None
    critical_percentile: float | None = None
    model_name: str = ""
    model_version: str = ""
    created_at: str = ""

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            msg = f"threshold value must be finite, got {self.value}"
            raise ValueError(msg)
        if self.score_kind not in SCORE_KINDS:
            msg = f"score_kind must be one of {SCORE_KINDS}, got {self.score_kind!r}"
            raise ValueError(msg)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Threshold:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: missing, unknown or invalid fields.
        """
        try:
            return cls(**values)
        except TypeError as exc:
            msg = f"invalid threshold record: {exc}"
            raise ValueError(msg) from exc

    def for_model(self, name: str, version: str) -> Threshold:
        """The same threshold, bound to a registered model version."""
        return replace(self, model_name=name, model_version=version)


def min_calibration_size(percentile: float) -> int:
    """Smallest calibration set on which ``percentile`` leaves at least one record above it.

    >>> min_calibration_size(99.0)
    100
    """
    tail = 1.0 - percentile / 100.0
    return math.ceil(1.0 / tail - 1e-9)


def _validated_scores(scores: npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        msg = f"calibration scores must be 1-D, got shape {arr.shape}"
        raise ValueError(msg)
    if arr.size == 0:
        msg = "no calibration scores: calibrate on at least one held-out normal record"
        raise ValueError(msg)
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        msg = f"{bad} of {arr.size} calibration scores are NaN or infinite"
        raise ValueError(msg)
    return arr


def _check_percentile(percentile: float, n: int, name: str = "percentile") -> None:
    if not 0.0 < percentile < 100.0:
        msg = f"{name} must be strictly between 0 and 100, got {percentile}"
        raise ValueError(msg)
    needed = min_calibration_size(percentile)
    if n < needed:
        msg = (
            f"{name} {percentile} needs at least {needed} calibration records "
            f"(got {n}): use a lower percentile or more normal data"
        )
        raise ValueError(msg)


def default_critical_percentile(percentile: float, n: int) -> float | None:
    """A tenfold rarer percentile (99 -> 99.9) when ``n`` records support it, else ``None``."""
    critical = 100.0 - (100.0 - percentile) / 10.0
    return critical if n >= min_calibration_size(critical) else None


def calibrate_percentile(
    scores: npt.ArrayLike,
    percentile: float,
    *,
    score_kind: ScoreKind,
    critical_percentile: float | None = None,
    created_at: str = "",
) -> Threshold:
    """Calibrate a threshold at ``percentile`` of normal calibration scores.

    The value is numpy's linearly interpolated percentile. Because a record is anomalous
    only when strictly above it, tied scores at the threshold never alert; the fraction
    that does alert on the calibration set is reported as ``empirical_alert_rate``.

    Args:
        scores: ``(n,)`` scores of held-out *normal* records.
        percentile: in (0, 100), e.g. 99.
        score_kind: the score these are.
        critical_percentile: optional higher percentile for ``critical`` alerts.
        created_at: ISO time stamp to record (the caller owns the clock).

    Returns:
        The :class:`Threshold`.

    Raises:
        ValueError: empty or non-finite scores, a percentile out of range, or too few
            records for it.
    """
    arr = _validated_scores(scores)
    _check_percentile(percentile, arr.size)
    value = float(np.percentile(arr, percentile))
    critical_value = None
    if critical_percentile is not None:
        _check_percentile(critical_percentile, arr.size, "critical_percentile")
        if critical_percentile <= percentile:
            msg = f"critical_percentile {critical_percentile} must exceed percentile {percentile}"
            raise ValueError(msg)
        critical_value = float(np.percentile(arr, critical_percentile))
    return Threshold(
        value=value,
        score_kind=score_kind,
        percentile=float(percentile),
        n_calibration=int(arr.size),
        expected_alert_rate=1.0 - percentile / 100.0,
        empirical_alert_rate=float(np.mean(arr > value)),
        critical_value=critical_value,
        critical_percentile=critical_percentile,
        created_at=created_at,
    )
