from __future__ import annotations

import numpy as np
import pytest

from streamvae.thresholds import (
    Threshold,
    calibrate_percentile,
    classify,
    default_critical_percentile,
    min_calibration_size,
    severities,
)


def test_threshold_is_the_percentile_of_normal_scores():
    scores = np.arange(1, 1001, dtype=float)
    thr = calibrate_percentile(scores, 99.0, score_kind="neg_elbo")
    assert thr.value == pytest.approx(np.percentile(scores, 99.0))
    assert thr.n_calibration == 1000
    assert thr.expected_alert_rate == pytest.approx(0.01)
    assert thr.empirical_alert_rate == pytest.approx(0.01)


@pytest.mark.parametrize("scores", [[], np.zeros((3, 2))])
def test_empty_or_non_1d_scores_are_refused(scores):
    with pytest.raises(ValueError, match="calibration scores|no calibration"):
        calibrate_percentile(scores, 99.0, score_kind="neg_elbo")


def test_non_finite_scores_are_refused():
    with pytest.raises(ValueError, match="NaN or infinite"):
        calibrate_percentile([1.0, np.nan] * 100, 90.0, score_kind="neg_elbo")


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
    scores = np.ones(200)
    thr = calibrate_percentile(scores, 99.0, score_kind="neg_elbo")
    assert thr.value == 1.0
    assert thr.empirical_alert_rate == 0.0
    assert not classify(scores, thr.value).any()


def test_classify_is_strictly_greater():
    assert classify([0.999, 1.0, 1.001], 1.0).tolist() == [False, False, True]
    assert classify([0.0, 1e-12], 0.0).tolist() == [False, True], "a 0.0 threshold is a real value"


def test_severities_with_and_without_critical_level():
    thr = calibrate_percentile(
        np.arange(1000.0), 99.0, score_kind="neg_elbo", critical_percentile=99.9
    )
    assert thr.critical_value is not None and thr.critical_value > thr.value
    levels = severities([0.0, thr.value + 0.1, thr.critical_value + 0.1], thr)
    assert levels.tolist() == ["", "warning", "critical"]
    plain = calibrate_percentile(np.arange(1000.0), 99.0, score_kind="neg_elbo")
    assert severities([1e9], plain).tolist() == ["warning"]


def test_critical_percentile_must_exceed_the_main_one():
    with pytest.raises(ValueError, match="must exceed"):
        calibrate_percentile(np.arange(1000.0), 99.0, score_kind="kl", critical_percentile=95.0)


def test_default_critical_percentile_needs_enough_records():
    assert default_critical_percentile(99.0, 1000) == pytest.approx(99.9)
    assert default_critical_percentile(99.0, 999) is None


def test_round_trip_and_binding():
    thr = calibrate_percentile(np.arange(500.0), 95.0, score_kind="recon_error", created_at="t")
    bound = thr.for_model("m", "3")
    again = Threshold.from_dict(bound.to_dict())
    assert again == bound
    assert (again.model_name, again.model_version) == ("m", "3")
    with pytest.raises(ValueError, match="invalid threshold record"):
        Threshold.from_dict({"value": 1.0})
    with pytest.raises(ValueError, match="score_kind"):
        Threshold.from_dict(bound.to_dict() | {"score_kind": "bogus"})
