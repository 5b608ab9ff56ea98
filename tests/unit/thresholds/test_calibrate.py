from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from streamvae.thresholds import (
    Bootstrap,
    Threshold,
    ThresholdSet,
    calibrate_fpr,
    calibrate_percentile,
    conformal_quantile,
    fpr_for_alert_budget,
    min_calibration_size,
    min_size_for_fpr,
    p_values,
)


def test_percentile_threshold_of_normal_scores():
    scores = np.arange(1, 1001, dtype=float)
    thr = calibrate_percentile(scores, 99.0, score_kind="neg_elbo")
    assert thr.value == pytest.approx(np.percentile(scores, 99.0))
    assert (thr.n_calibration, thr.method, thr.percentile) == (1000, "percentile", 99.0)
    assert thr.expected_alert_rate == pytest.approx(0.01)
    assert thr.empirical_alert_rate == pytest.approx(0.01)
    assert thr.value_interval is None, "no bootstrap unless asked"


@pytest.mark.parametrize("scores", [[], np.zeros((3, 2))])
def test_empty_or_non_1d_scores_are_refused(scores):
    with pytest.raises(ValueError, match="calibration scores|no calibration"):
        calibrate_percentile(scores, 99.0, score_kind="neg_elbo")


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError, match="NaN or infinite"):
        calibrate_fpr([1.0, np.nan] * 100, 0.1, score_kind="neg_elbo")


@pytest.mark.parametrize("percentile", [0.0, 100.0, -5.0, 150.0])
def test_percentile_out_of_range(percentile):
    with pytest.raises(ValueError, match=f"got {percentile}"):
        calibrate_percentile(np.arange(1000.0), percentile, score_kind="neg_elbo")


def test_too_few_records_for_the_percentile_says_how_many_are_needed():
    with pytest.raises(ValueError, match="at least 100 calibration records"):
        calibrate_percentile(np.arange(99.0), 99.0, score_kind="neg_elbo")
    assert min_calibration_size(99.0) == 100
    assert min_calibration_size(95.0) == 20


def test_ties_at_the_threshold_do_not_alert():
    thr = calibrate_percentile(np.ones(200), 99.0, score_kind="neg_elbo")
    assert thr.value == 1.0
    assert thr.empirical_alert_rate == 0.0
    thresholds = ThresholdSet(default=thr, reference={"": np.ones(200)})
    assert (thresholds.decide(np.ones(5)).severities == "").all()


def test_a_score_alerts_only_strictly_above_its_threshold():
    one = calibrate_percentile(np.ones(200), 99.0, score_kind="neg_elbo")
    decided = ThresholdSet(default=one).decide(np.array([0.999, 1.0, 1.001]))
    assert (decided.severities != "").tolist() == [False, False, True]
    zero = calibrate_percentile(np.zeros(200), 99.0, score_kind="neg_elbo")
    decided = ThresholdSet(default=zero).decide(np.array([0.0, 1e-12]))
    assert (decided.severities != "").tolist() == [False, True], "a 0.0 threshold is real"


def test_conformal_quantile_is_the_ceil_n_plus_1_order_statistic():
    s = np.arange(1.0, 100.0)  # n = 99
    assert conformal_quantile(s, 0.1) == 90.0  # ceil(100 * 0.9) = 90th smallest
    assert conformal_quantile(s, 0.01) == 99.0
    thr = calibrate_fpr(s[::-1], 0.1, score_kind="kl")
    assert (thr.value, thr.method, thr.target_fpr) == (90.0, "conformal", 0.1)


def test_fpr_below_one_over_n_plus_one_is_refused_with_the_size_needed():
    calibrate_fpr(np.arange(99.0), 0.01, score_kind="neg_elbo")  # 1/(99+1): just supported
    with pytest.raises(
        ValueError, match="needs at least 999 normal calibration records \\(got 500\\)"
    ):
        calibrate_fpr(np.arange(500.0), 0.001, score_kind="neg_elbo")
    assert min_size_for_fpr(0.001) == 999
    for alpha in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            calibrate_fpr(np.arange(500.0), alpha, score_kind="neg_elbo")


@pytest.mark.parametrize(("n", "alpha"), [(2000, 0.01), (500, 0.05)])
def test_realised_fpr_lies_in_the_reported_interval_at_its_level(n, alpha):
    """On known (normal) scores: repeated calibrations, true FPR vs the reported interval."""
    rng = np.random.default_rng(42)
    trials, level = 120, 0.9
    inside, realised = 0, []
    for t in range(trials):
        thr = calibrate_fpr(
            rng.standard_normal(n), alpha, score_kind="neg_elbo",
            bootstrap=Bootstrap(n_resamples=200, level=level, seed=t),
        )  # fmt: skip
        true_fpr = float(stats.norm.sf(thr.value))
        realised.append(true_fpr)
        lo, hi = thr.fpr_interval
        inside += lo <= true_fpr <= hi
    coverage = inside / trials
    # binomial sd at 120 trials is ~0.027: allow three of them below the nominal level
    assert coverage >= level - 0.08, coverage
    assert np.mean(realised) <= alpha * 1.1, "conformal: the expected FPR is at most alpha"


def test_bootstrap_intervals_bracket_the_estimate():
    thr = calibrate_percentile(
        np.random.default_rng(0).exponential(size=3000), 99.0, score_kind="neg_elbo",
        bootstrap=Bootstrap(n_resamples=300, level=0.95),
    )  # fmt: skip
    lo, hi = thr.value_interval
    assert lo < thr.value < hi
    assert thr.fpr_interval[0] < 0.01 < thr.fpr_interval[1]
    assert thr.interval_level == 0.95


def test_alert_budget_to_rate():
    assert fpr_for_alert_budget(86.4, 1.0) == pytest.approx(0.001)
    assert fpr_for_alert_budget(20, 50) == pytest.approx(20 / (50 * 86_400))
    with pytest.raises(ValueError, match="more than"):
        fpr_for_alert_budget(10, 1e-4)
    with pytest.raises(ValueError, match="must be > 0"):
        fpr_for_alert_budget(0, 1)


def test_p_values_are_uniform_on_normal_data():
    """Marginally (over calibration sets) a normal record's p-value is uniform on the
    grid {1/(n+1), ..., 1}; conditionally on one calibration set it is only close to it."""
    rng = np.random.default_rng(7)
    trials, n = 4000, 199
    p = np.array(
        [
            p_values(rng.standard_normal(1), np.sort(rng.standard_normal(n)))[0]
            for _ in range(trials)
        ]
    )
    assert p.min() >= 1 / (n + 1) and p.max() <= 1.0
    assert stats.kstest(p, "uniform").pvalue > 0.01
    for a in (0.05, 0.2, 0.5):
        assert np.mean(p <= a) == pytest.approx(a, abs=0.02)


def test_p_values_of_outliers_are_small():
    calibration = np.sort(np.random.default_rng(1).standard_normal(999))
    assert p_values([100.0], calibration)[0] == pytest.approx(1 / 1000)
    assert p_values([-100.0], calibration)[0] == 1.0


def test_round_trip_and_binding():
    thr = calibrate_fpr(
        np.arange(500.0), 0.05, score_kind="recon_error", created_at="t",
        bootstrap=Bootstrap(n_resamples=20),
    )  # fmt: skip
    bound = thr.for_model("m", "3")
    again = Threshold.from_dict(bound.to_dict())
    assert again == bound
    assert isinstance(again.fpr_interval, tuple)
    with pytest.raises(ValueError, match="invalid threshold record"):
        Threshold.from_dict({"value": 1.0})
    with pytest.raises(ValueError, match="score_kind"):
        Threshold.from_dict(bound.to_dict() | {"score_kind": "bogus"})
    with pytest.raises(ValueError, match="method"):
        Threshold.from_dict(bound.to_dict() | {"method": "guess"})
    assert not math.isnan(again.value)
