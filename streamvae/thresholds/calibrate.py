"""Threshold calibration on held-out normal scores: a percentile or a target false-positive rate.

A record is anomalous iff ``score > threshold``. For a target false-positive rate ``alpha`` the
threshold is the finite-sample conformal quantile, the ``ceil((n + 1)(1 - alpha))``-th smallest
calibration score: for exchangeable normal scores, ``P(score > threshold) <= alpha``. Bootstrap
intervals give the uncertainty of the threshold and of the false-positive rate it realises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from streamvae.types import ALL_SCORE_KINDS, ScoreKind

F64 = npt.NDArray[np.float64]
Method = Literal["percentile", "conformal", "pot", "target_precision", "target_recall"]
METHODS: tuple[Method, ...] = (
    "percentile",
    "conformal",
    "pot",
    "target_precision",
    "target_recall",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Threshold:
    """A calibrated decision threshold: a record is anomalous iff ``score > value``.

    Attributes:
        value: the threshold on the score.
        score_kind: which score it applies to.
        method: how it was derived.
        n_calibration: number of normal records it was calibrated on.
        target_fpr: the false-positive rate asked for (``None`` for a plain percentile).
        percentile: the percentile of normal scores it sits at (``percentile`` method).
        expected_alert_rate: nominal alert rate on normal traffic.
        empirical_alert_rate: fraction of the calibration scores strictly above ``value``.
        value_interval: bootstrap interval of the threshold.
        fpr_interval: bootstrap interval of the false-positive rate it realises.
        interval_level: confidence level of both intervals.
        extrapolated: the rate is below what the calibration set can support (a tail model).
        diagnostics: method-specific figures (tail-fit parameters and goodness of fit).
        model_name: registered model it was calibrated for ("" if none).
        model_version: its version ("" if none).
        created_at: ISO-8601 UTC time of calibration.
    """

    value: float
    score_kind: ScoreKind
    method: Method = "percentile"
    n_calibration: int
    target_fpr: float | None = None
    percentile: float | None = None
    expected_alert_rate: float
    empirical_alert_rate: float
    value_interval: tuple[float, float] | None = None
    fpr_interval: tuple[float, float] | None = None
    interval_level: float | None = None
    extrapolated: bool = False
    diagnostics: dict[str, float] = field(default_factory=dict)
    model_name: str = ""
    model_version: str = ""
    created_at: str = ""

    def __post_init__(self) -> None:
        if not math.isfinite(self.value):
            msg = f"threshold value must be finite, got {self.value}"
            raise ValueError(msg)
        if self.score_kind not in ALL_SCORE_KINDS:
            msg = f"score_kind must be one of {ALL_SCORE_KINDS}, got {self.score_kind!r}"
            raise ValueError(msg)
        if self.method not in METHODS:
            msg = f"method must be one of {METHODS}, got {self.method!r}"
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
        fixed = dict(values)
        for key in ("value_interval", "fpr_interval"):
            if fixed.get(key) is not None:
                fixed[key] = tuple(fixed[key])
        try:
            return cls(**fixed)
        except TypeError as exc:
            msg = f"invalid threshold record: {exc}"
            raise ValueError(msg) from exc

    def for_model(self, name: str, version: str) -> Threshold:
        """The same threshold, bound to a registered model version."""
        return replace(self, model_name=name, model_version=version)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bootstrap:
    """How to compute bootstrap intervals (``n_resamples=0`` turns them off)."""

    n_resamples: int = 500
    level: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_resamples < 0 or not 0.0 < self.level < 1.0:
            msg = f"bad bootstrap settings: n_resamples={self.n_resamples}, level={self.level}"
            raise ValueError(msg)


def min_calibration_size(percentile: float) -> int:
    """Smallest calibration set on which ``percentile`` leaves at least one record above it.

    >>> min_calibration_size(99.0)
    100
    """
    tail = 1.0 - percentile / 100.0
    return math.ceil(1.0 / tail - 1e-9)


def min_size_for_fpr(alpha: float) -> int:
    """Smallest ``n`` with ``alpha >= 1 / (n + 1)`` (the conformal quantile exists).

    >>> min_size_for_fpr(0.01)
    99
    """
    return max(1, math.ceil(1.0 / alpha - 1.0 - 1e-9))


def fpr_for_alert_budget(alerts_per_day: float, records_per_second: float) -> float:
    """The false-positive rate that yields ``alerts_per_day`` on normal traffic at that rate.

    >>> round(fpr_for_alert_budget(86.4, 1.0), 6)
    0.001

    Raises:
        ValueError: non-positive inputs, or a budget of more alerts than records.
    """
    if alerts_per_day <= 0 or records_per_second <= 0:
        msg = (
            f"alerts per day ({alerts_per_day}) and records per second "
            f"({records_per_second}) must be > 0"
        )
        raise ValueError(msg)
    alpha = alerts_per_day / (records_per_second * 86_400.0)
    if alpha >= 1.0:
        per_day = records_per_second * 86_400
        msg = f"{alerts_per_day} alerts per day is more than the {per_day:.0f} records a day"
        raise ValueError(msg)
    return alpha


def validated_scores(scores: npt.ArrayLike) -> F64:
    """Calibration scores as a sorted float64 array.

    Raises:
        ValueError: not 1-D, empty, or holding NaN/Inf.
    """
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
    return np.sort(arr)


def _check_percentile(percentile: float, n: int) -> None:
    if not 0.0 < percentile < 100.0:
        msg = f"percentile must be strictly between 0 and 100, got {percentile}"
        raise ValueError(msg)
    needed = min_calibration_size(percentile)
    if n < needed:
        msg = (
            f"percentile {percentile} needs at least {needed} calibration records "
            f"(got {n}): use a lower percentile or more normal data"
        )
        raise ValueError(msg)


def check_fpr(alpha: float, n: int) -> None:
    """Refuse rates the conformal quantile cannot support on ``n`` records.

    Raises:
        ValueError: ``alpha`` outside (0, 1) or below ``1 / (n + 1)``, saying how many
            records would be needed.
    """
    if not 0.0 < alpha < 1.0:
        msg = f"target false-positive rate must be strictly between 0 and 1, got {alpha}"
        raise ValueError(msg)
    if alpha < 1.0 / (n + 1):
        needed = min_size_for_fpr(alpha)
        msg = (
            f"a false-positive rate of {alpha:.3g} needs at least {needed} normal calibration "
            f"records (got {n}); collect more, or use the tail model (--tail) to extrapolate"
        )
        raise ValueError(msg)


def conformal_quantile(sorted_scores: F64, alpha: float) -> float:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest score (``sorted_scores`` ascending)."""
    k = math.ceil((sorted_scores.size + 1) * (1.0 - alpha) - 1e-9)
    return float(sorted_scores[min(k, sorted_scores.size) - 1])


def bootstrap_intervals(
    sorted_scores: F64, pick: Callable[[F64], float], boot: Bootstrap
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Percentile-bootstrap intervals of the threshold ``pick`` returns and of its FPR.

    Each resample of the calibration scores gives a threshold ``t_b``; its false-positive
    rate is estimated on the original scores as the fraction strictly above ``t_b``.
    """
    if boot.n_resamples == 0:
        return None
    rng = np.random.default_rng(boot.seed)
    n = sorted_scores.size
    values = np.empty(boot.n_resamples)
    for b in range(boot.n_resamples):
        values[b] = pick(np.sort(sorted_scores[rng.integers(0, n, n)]))
    fprs = (n - np.searchsorted(sorted_scores, values, side="right")) / n
    tails = ((1.0 - boot.level) / 2.0, (1.0 + boot.level) / 2.0)
    v_lo, v_hi = np.quantile(values, tails)
    f_lo, f_hi = np.quantile(fprs, tails)
    return (float(v_lo), float(v_hi)), (float(f_lo), float(f_hi))


def _build(
    sorted_scores: F64, value: float, boot: Bootstrap, pick: Callable[[F64], float], **fields: Any
) -> Threshold:
    intervals = bootstrap_intervals(sorted_scores, pick, boot)
    return Threshold(
        value=value,
        n_calibration=int(sorted_scores.size),
        empirical_alert_rate=float(np.mean(sorted_scores > value)),
        value_interval=None if intervals is None else intervals[0],
        fpr_interval=None if intervals is None else intervals[1],
        interval_level=None if intervals is None else boot.level,
        **fields,
    )


def calibrate_percentile(
    scores: npt.ArrayLike,
    percentile: float,
    *,
    score_kind: ScoreKind,
    bootstrap: Bootstrap | None = None,
    created_at: str = "",
) -> Threshold:
    """Calibrate at ``percentile`` of normal scores (numpy's interpolated percentile).

    Tied scores at the threshold never alert; the fraction that does alert on the
    calibration set is ``empirical_alert_rate``.

    Raises:
        ValueError: empty or non-finite scores, a percentile out of range, or too few
            records for it.
    """
    arr = validated_scores(scores)
    _check_percentile(percentile, arr.size)

    def pick(sample: F64) -> float:
        return float(np.percentile(sample, percentile))

    return _build(
        arr, pick(arr), bootstrap or Bootstrap(n_resamples=0), pick,
        score_kind=score_kind, method="percentile", percentile=float(percentile),
        expected_alert_rate=1.0 - percentile / 100.0, created_at=created_at,
    )  # fmt: skip


def calibrate_fpr(
    scores: npt.ArrayLike,
    alpha: float,
    *,
    score_kind: ScoreKind,
    bootstrap: Bootstrap | None = None,
    created_at: str = "",
) -> Threshold:
    """Calibrate for a target false-positive rate with the finite-sample conformal quantile.

    Raises:
        ValueError: bad scores, ``alpha`` outside (0, 1), or ``alpha < 1 / (n + 1)``.
    """
    arr = validated_scores(scores)
    check_fpr(alpha, arr.size)

    def pick(sample: F64) -> float:
        return conformal_quantile(sample, alpha)

    return _build(
        arr, pick(arr), bootstrap or Bootstrap(n_resamples=0), pick,
        score_kind=score_kind, method="conformal", target_fpr=float(alpha),
        expected_alert_rate=float(alpha), created_at=created_at,
    )  # fmt: skip


def p_values(scores: npt.ArrayLike, sorted_calibration: F64) -> F64:
    """Conformal p-values: ``(1 + #{calibration >= score}) / (n + 1)`` per score.

    Small p-values are unusual; on normal data they are (super-)uniform.

    >>> p_values([0.5, 2.0, 9.0], np.array([1.0, 2.0, 3.0])).tolist()
    [1.0, 0.75, 0.25]
    """
    s = np.asarray(scores, dtype=np.float64)
    n = sorted_calibration.size
    at_least = n - np.searchsorted(sorted_calibration, s, side="left")
    return np.asarray((1.0 + at_least) / (n + 1.0), dtype=np.float64)
