from __future__ import annotations

import math

import numpy as np
import pytest

from streamvae.thresholds import (
    Bootstrap,
    CalibrationSpec,
    ThresholdSet,
    calibrate_for_target,
    calibrate_percentile,
    calibrate_pot,
    calibrate_set,
    check_bands,
    precision_recall_curve,
)


def test_pot_extrapolates_an_exponential_tail():
    scores = np.random.default_rng(0).exponential(size=5000)
    thr = calibrate_pot(scores, 1e-5, score_kind="neg_elbo", bootstrap=Bootstrap(n_resamples=50))
    assert thr.method == "pot" and thr.extrapolated
    assert thr.value == pytest.approx(-math.log(1e-5), rel=0.15)  # the true quantile: 11.5
    assert abs(thr.diagnostics["xi"]) < 0.2, "an exponential tail has shape 0"
    assert thr.diagnostics["n_excesses"] == 500
    assert thr.diagnostics["ks_pvalue"] > 0.01, "the fit describes the tail"
    lo, hi = thr.value_interval
    assert lo < thr.value < hi
    assert thr.fpr_interval[0] < 1e-5 < thr.fpr_interval[1]


def test_pot_inside_the_data_is_not_an_extrapolation():
    scores = np.random.default_rng(1).exponential(size=5000)
    thr = calibrate_pot(scores, 0.01, score_kind="neg_elbo")
    assert not thr.extrapolated
    assert thr.value == pytest.approx(np.quantile(scores, 0.99), rel=0.1)


def test_pot_refuses_what_it_cannot_fit():
    scores = np.random.default_rng(2).exponential(size=100)
    with pytest.raises(ValueError, match="only 10 scores above"):
        calibrate_pot(scores, 1e-4, score_kind="neg_elbo")
    with pytest.raises(ValueError, match="alpha < tail_fraction"):
        calibrate_pot(np.arange(1000.0), 0.2, score_kind="neg_elbo")


def _labelled(seed=0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(900, int), np.ones(100, int)]
    s = np.r_[rng.normal(0, 1, 900), rng.normal(3, 1, 100)]
    return y, s


def test_precision_recall_curve_counts():
    curve = precision_recall_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert curve.recall[0] == 1.0 and curve.false_positive_rate[0] == 1.0
    i = int(np.flatnonzero(curve.thresholds == 0.35)[0])
    assert (curve.precision[i], curve.recall[i]) == (0.5, 0.5)  # flagged: 0.4 and 0.8
    assert math.isnan(curve.precision[-1]), "nothing flagged above the top score"


def test_target_precision_picks_the_most_recall():
    y, s = _labelled()
    thr = calibrate_for_target(y, s, score_kind="neg_elbo", target_precision=0.9)
    flagged = s > thr.value
    precision = y[flagged].mean()
    assert precision >= 0.9
    assert thr.diagnostics["precision"] == pytest.approx(precision)
    lower = s[s < thr.value].max()
    assert y[s > lower].mean() < 0.9, "the next lower threshold misses the target"
    assert thr.method == "target_precision"


def test_target_recall_picks_the_highest_threshold():
    y, s = _labelled(1)
    thr = calibrate_for_target(y, s, score_kind="neg_elbo", target_recall=0.8)
    recall = (s > thr.value)[y == 1].mean()
    assert recall >= 0.8
    higher = s[s > thr.value].min()
    assert (s > higher)[y == 1].mean() < 0.8


def test_label_aware_errors():
    y, s = _labelled()
    with pytest.raises(ValueError, match="exactly one"):
        calibrate_for_target(y, s, score_kind="kl")
    with pytest.raises(ValueError, match="no anomalies"):
        calibrate_for_target(np.zeros(10, int), np.arange(10.0), score_kind="kl", target_recall=0.5)
    with pytest.raises(ValueError, match="no threshold reaches precision"):
        calibrate_for_target([1, 0], [0.0, 1.0], score_kind="kl", target_precision=1.0)


def _segmented():
    rng = np.random.default_rng(3)
    scores = np.r_[rng.normal(0, 1, 1000), rng.normal(10, 1, 1000), rng.normal(0, 1, 50)]
    segments = ["a"] * 1000 + ["b"] * 1000 + ["tiny"] * 50
    return scores, segments


def test_per_segment_thresholds_with_fallback():
    scores, segments = _segmented()
    spec = CalibrationSpec(target_fpr=0.01, segment_field="merchant", min_segment_size=200)
    ts, skipped = calibrate_set(scores, spec, score_kind="neg_elbo", segments=segments)
    assert set(ts.segments) == {"a", "b"}
    assert "tiny" in skipped and "min_segment_size" in skipped["tiny"]
    assert ts.segments["b"].value > ts.segments["a"].value + 5
    decided = ts.decide([5.0, 5.0, 5.0, 5.0], ["a", "b", "tiny", None])
    assert decided.thresholds.tolist()[:2] == [ts.segments["a"].value, ts.segments["b"].value]
    assert decided.thresholds[2] == decided.thresholds[3] == ts.default.value
    assert decided.severities.tolist()[:2] == ["critical", ""], "5 is extreme for a, normal for b"
    assert decided.p_values[1] > 0.5


def test_per_segment_needs_the_values():
    scores, _ = _segmented()
    with pytest.raises(ValueError, match="one 'merchant' value per record"):
        calibrate_set(
            scores, CalibrationSpec(percentile=99, segment_field="merchant"), score_kind="kl"
        )


def test_severity_bands_follow_p_values():
    scores = np.random.default_rng(4).standard_normal(9999)
    ts, _ = calibrate_set(scores, CalibrationSpec(target_fpr=0.01), score_kind="neg_elbo")
    decided = ts.decide([ts.default.value - 1e-9, ts.default.value + 1e-6, 50.0])
    assert decided.severities.tolist() == ["", "warning", "critical"]
    assert decided.p_values[2] == pytest.approx(1 / 10_000)
    assert decided.p_values[1] <= 0.01


def test_without_reference_scores_alerts_are_warnings():
    thr = calibrate_percentile(np.arange(1000.0), 99, score_kind="neg_elbo")
    decided = ThresholdSet(thr).decide([1e9])
    assert decided.severities.tolist() == ["warning"]
    assert math.isnan(decided.p_values[0])


def test_bands_validation_and_round_trip():
    check_bands((("warning", 1.0),))
    for bad in ((("warning", 0.5),), (("critical", 0.5), ("warning", 0.1)), (("loud", 1.0),)):
        with pytest.raises(ValueError, match="band"):
            check_bands(bad)
    scores, segments = _segmented()
    spec = CalibrationSpec(
        percentile=99, segment_field="merchant", severity_bands=(("warning", 1.0),)
    )
    ts, _ = calibrate_set(scores, spec, score_kind="neg_elbo", segments=segments)
    again = ThresholdSet.from_dict(ts.to_dict(), ts.reference)
    assert again.to_dict() == ts.to_dict()
    assert ThresholdSet.from_dict(ts.default.to_dict()).default == ts.default, (
        "older single records load"
    )
