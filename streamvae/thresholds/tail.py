"""Peaks over threshold: a generalised Pareto fit of the score tail, for very small rates.

Below ``1 / (n + 1)`` the calibration set holds no score that rare, so the empirical quantile
cannot exist. Fitting a generalised Pareto distribution (GPD) to the excesses over a high
quantile ``u`` extrapolates the tail (Pickands-Balkema-de Haan):
``P(S > t) ~ (n_u / n) * (1 + xi (t - u) / sigma) ** (-1 / xi)``. Such a threshold is an
*extrapolation*, flagged as one, and comes with the fit's diagnostics.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from streamvae.thresholds.calibrate import (
    F64,
    Bootstrap,
    Threshold,
    bootstrap_intervals,
    validated_scores,
)
from streamvae.types import ScoreKind


def _fit(sorted_scores: F64, tail_fraction: float) -> tuple[float, float, float, F64]:
    """``(u, xi, sigma, excesses)`` of a GPD fitted to the top ``tail_fraction`` of scores."""
    n = sorted_scores.size
    n_tail = max(1, math.floor(n * tail_fraction))
    u = float(sorted_scores[n - n_tail - 1])
    excesses = sorted_scores[sorted_scores > u] - u
    from scipy import stats  # 0.8 s to import: only when a tail is fitted

    xi, _, sigma = stats.genpareto.fit(excesses, floc=0.0)
    return u, float(xi), float(sigma), excesses


def _tail_quantile(u: float, xi: float, sigma: float, tail_share: float, alpha: float) -> float:
    ratio = tail_share / alpha  # > 1: the target lies inside the modelled tail
    if abs(xi) < 1e-9:
        return u + sigma * math.log(ratio)
    return u + sigma / xi * (float(ratio**xi) - 1.0)


def calibrate_pot(
    scores: npt.ArrayLike,
    alpha: float,
    *,
    score_kind: ScoreKind,
    tail_fraction: float = 0.1,
    min_excesses: int = 30,
    bootstrap: Bootstrap | None = None,
    created_at: str = "",
) -> Threshold:
    """Threshold for false-positive rate ``alpha`` from a GPD fit of the top scores.

    Args:
        scores: normal calibration scores.
        alpha: target false-positive rate; must lie inside the fitted tail
            (``alpha < tail_fraction``).
        score_kind: the score these are.
        tail_fraction: share of the highest scores the GPD is fitted to.
        min_excesses: refuse a fit on fewer tail points.
        bootstrap: intervals from refitting on resamples (the FPR interval is the fitted
            tail probability of each resampled threshold, so it is model-based too).
        created_at: ISO time stamp to record.

    Returns:
        A ``pot`` threshold; ``extrapolated`` is true when ``alpha < 1 / (n + 1)``.
        ``diagnostics`` holds ``u``, ``xi``, ``sigma``, ``n_excesses``, and the
        Kolmogorov-Smirnov statistic and p-value of the excesses against the fit.

    Raises:
        ValueError: bad scores or settings, too few tail points, or a failed fit.
    """
    arr = validated_scores(scores)
    if not 0.0 < tail_fraction < 0.5:
        msg = f"tail_fraction must be in (0, 0.5), got {tail_fraction}"
        raise ValueError(msg)
    if not 0.0 < alpha < tail_fraction:
        msg = f"the tail model needs 0 < alpha < tail_fraction={tail_fraction}, got {alpha}"
        raise ValueError(msg)
    u, xi, sigma, excesses = _fit(arr, tail_fraction)
    if excesses.size < min_excesses:
        msg = (
            f"only {excesses.size} scores above the tail threshold (need {min_excesses}): "
            "more calibration data or a larger tail_fraction"
        )
        raise ValueError(msg)
    if not (math.isfinite(xi) and sigma > 0):
        msg = f"the tail fit failed (xi={xi}, sigma={sigma})"
        raise ValueError(msg)
    n = arr.size
    share = excesses.size / n
    value = _tail_quantile(u, xi, sigma, share, alpha)
    from scipy import stats

    ks = stats.kstest(excesses, "genpareto", args=(xi, 0.0, sigma))

    def pick(sample: F64) -> float:
        su, sxi, ssigma, sexc = _fit(sample, tail_fraction)
        return _tail_quantile(su, sxi, ssigma, sexc.size / sample.size, alpha)

    boot = bootstrap or Bootstrap(n_resamples=0)
    intervals = bootstrap_intervals(arr, pick, boot)
    fpr_interval = None
    if intervals is not None:
        # model-based: the fitted tail probability at each end of the threshold interval
        lo, hi = intervals[0]
        sf = stats.genpareto.sf
        fpr_interval = (
            float(share * sf(max(hi - u, 0.0), xi, 0.0, sigma)),
            float(share * sf(max(lo - u, 0.0), xi, 0.0, sigma)),
        )
    return Threshold(
        value=float(value),
        score_kind=score_kind,
        method="pot",
        n_calibration=int(n),
        target_fpr=float(alpha),
        expected_alert_rate=float(alpha),
        empirical_alert_rate=float(np.mean(arr > value)),
        value_interval=None if intervals is None else intervals[0],
        fpr_interval=fpr_interval,
        interval_level=None if intervals is None else boot.level,
        extrapolated=alpha < 1.0 / (n + 1),
        diagnostics={
            "u": u, "xi": xi, "sigma": sigma, "n_excesses": float(excesses.size),
            "tail_fraction": tail_fraction, "ks_statistic": float(ks.statistic),
            "ks_pvalue": float(ks.pvalue),
        },
        created_at=created_at,
    )  # fmt: skip
