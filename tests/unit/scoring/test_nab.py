"""NAB scoring rules on hand-computed cases, and the threshold sweep against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamvae.scoring.nab import (
    NAB_PROFILES,
    optimal_threshold,
    probationary_length,
    score_corpus,
    score_file,
    sweep_file,
)

STANDARD = NAB_PROFILES["standard"]
N, WINDOW = 100, (50, 59)  # probation: the first 15 points; one window 10 points wide
MAX_TP = 2.0 / (1.0 + math.exp(-5.0)) - 1.0  # 0.98661


def flags(*points: int) -> np.ndarray:
    scores = np.zeros(N)
    scores[list(points)] = 1.0
    return scores


def raw(*points: int, profile=STANDARD) -> float:
    sweep = sweep_file("f.csv", N, [WINDOW], profile)
    return score_file(sweep, flags(*points), 0.5).raw


def test_probationary_period_is_15_percent_capped_at_750_points():
    assert probationary_length(100) == 15
    assert probationary_length(1127) == 169
    assert probationary_length(4032) == 604
    assert probationary_length(22695) == 750


def test_detection_on_the_first_point_of_the_window_earns_exactly_tp_weight():
    assert raw(50) == pytest.approx(1.0)
    score = score_file(sweep_file("f", N, [WINDOW], STANDARD), flags(50), 0.5)
    assert (score.tp, score.fp, score.fn) == (1, 0, 0)
    assert score.normalized == pytest.approx(100.0)


def test_later_detection_earns_the_scaled_sigmoid_of_its_position():
    # last point: position -(59 - 59 + 1) / 10 = -0.1 -> 2 sigmoid(0.5) - 1 = 0.244919
    assert raw(59) == pytest.approx(0.244919 / MAX_TP, abs=1e-5)
    # only the earliest of several detections in a window counts: point 52, position -0.8
    assert raw(52, 55, 58) == pytest.approx((2.0 / (1.0 + math.exp(-4.0)) - 1.0) / MAX_TP)


def test_missed_window_costs_fn_weight_and_null_detector_scores_zero():
    score = score_file(sweep_file("f", N, [WINDOW], STANDARD), flags(), 0.5)
    assert score.raw == -1.0 and score.normalized == pytest.approx(0.0)
    low_fn = NAB_PROFILES["reward_low_FN_rate"]
    assert raw(profile=low_fn) == -2.0


def test_false_positives_before_near_and_far_after_a_window():
    # before any window: -1 x fp weight
    assert raw(20) == pytest.approx(-1.0 - 0.11)
    # one point after the window: relative distance 1 / (10 - 1), sigmoid -0.270847
    assert raw(60) == pytest.approx(-1.0 - 0.11 * 0.270847, abs=1e-6)
    # 36 points after: beyond three window widths, the full -1
    assert raw(95) == pytest.approx(-1.0 - 0.11)
    # reward_low_FP_rate doubles the false-positive cost
    assert raw(50, 20, profile=NAB_PROFILES["reward_low_FP_rate"]) == pytest.approx(1.0 - 0.22)


def test_detections_in_the_probationary_period_are_ignored():
    assert raw(5, 50) == pytest.approx(1.0)
    window_in_probation = sweep_file("f", N, [(2, 8)], STANDARD)
    assert window_in_probation.windows == 0  # not counted as a miss either
    assert score_file(window_in_probation, flags(), 0.5).raw == 0.0


def test_normalized_score_of_a_mixed_detector():
    score = score_file(sweep_file("f", N, [WINDOW], STANDARD), flags(50, 20), 0.5)
    assert score.normalized == pytest.approx(100.0 * (0.89 + 1.0) / 2.0)


def test_optimal_threshold_picks_the_best_cut_across_files():
    a = np.zeros(N)
    a[50], a[90] = 0.9, 0.95  # window start, and a false positive ranked above it
    b = np.zeros(N)
    b[30] = 0.92  # a false positive in a file with no window
    sweeps = [sweep_file("a", N, [WINDOW], STANDARD), sweep_file("b", N, [], STANDARD)]
    threshold, best = optimal_threshold(sweeps, [a, b])
    assert threshold == pytest.approx(0.9)
    assert best == pytest.approx(1.0 - 0.11 - 0.11)
    corpus = score_corpus([("a", N, [WINDOW]), ("b", N, [])], [a, b], STANDARD)
    assert corpus.threshold == pytest.approx(0.9)
    assert corpus.raw == pytest.approx(best)
    assert corpus.normalized == pytest.approx(100.0 * (best + 1.0) / 2.0)


@pytest.mark.parametrize("seed", range(5))
def test_threshold_sweep_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    files = [("x", 300, [(100, 130), (200, 209)]), ("y", 200, [(60, 80)]), ("z", 150, [])]
    scores = [np.round(rng.random(n), 2) for _, n, _ in files]  # ties on purpose
    for profile in NAB_PROFILES.values():
        sweeps = [sweep_file(name, n, w, profile) for name, n, w in files]
        _, best = optimal_threshold(sweeps, scores)
        candidates = np.unique(np.concatenate(scores))
        brute = max(
            sum(score_file(s, v, t).raw for s, v in zip(sweeps, scores, strict=True))
            for t in [1.1, *candidates.tolist()]
        )
        assert best == pytest.approx(brute)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="overlaps"):
        sweep_file("f", N, [(10, 20), (15, 30)], STANDARD)
    with pytest.raises(ValueError, match="out of range"):
        sweep_file("f", N, [(90, 120)], STANDARD)
    with pytest.raises(ValueError, match="scores for"):
        score_file(sweep_file("f", N, [], STANDARD), np.zeros(5), 0.5)
