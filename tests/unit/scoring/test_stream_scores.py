"""Streaming KPI scores: tail math, rolling statistics, novelty, suppression, scale-free
meaning, calibration on normal noise, and state that survives a snapshot."""

from __future__ import annotations

import base64
import itertools
import json
import math

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy.stats import norm

from streamvae.scoring.stream_scores import (
    RollingTail,
    SeriesScorer,
    StreamScoring,
    surprise,
)

W = 8


def _series(n: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return scale * (np.sin(2 * np.pi * t / 50) + 0.1 * rng.standard_normal(n))


def _run(scorer: SeriesScorer, values: np.ndarray, residuals: np.ndarray, start: int = W - 1):
    steps = range(start, len(values))
    return [scorer.step(float(residuals[i]), values[i - W + 1 : i + 1]) for i in steps]


@pytest.mark.parametrize("z", [-3.0, 0.0, 1.0, 2.5, 4.99, 5.01, 8.0, 20.0])
def test_surprise_is_the_closed_form_of_the_gaussian_tail(z):
    expected = 1.0 - math.exp(norm.logsf(z) / (10.0 * math.log(10.0)))
    assert surprise(z) == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_surprise_is_monotone_and_inside_zero_one():
    values = [surprise(z) for z in np.linspace(-10, 60, 2000)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(b >= a for a, b in itertools.pairwise(values))


def test_the_rolling_tail_holds_the_mean_and_spread_of_its_latest_values():
    rng = np.random.default_rng(1)
    data = rng.gamma(2.0, 3.0, 2_500) + 1e4  # a large offset: the sums must not lose digits
    tail = RollingTail(300, block=20)
    for i, value in enumerate(data):
        tail.add(float(value))
        assert tail.count == min(i + 1, 280 + (i + 1) % 20)  # 14 full blocks + the partial one
        if i > 0 and (i % 37 == 0 or i == data.size - 1):
            held = data[i + 1 - tail.count : i + 1]
            probe = 1e4 + 20.0
            assert tail.z(probe) == pytest.approx((probe - held.mean()) / held.std(), rel=1e-6)
    restored = RollingTail(300, block=20)
    restored.load(json.loads(json.dumps(tail.state())))
    assert (restored.count, restored.z(1e4)) == (tail.count, tail.z(1e4))
    with pytest.raises(ValueError, match="misshaped"):
        restored.load(tail.state()[1:])


def test_novelty_is_the_distance_to_the_nearest_earlier_window_that_does_not_overlap():
    settings = StreamScoring(novelty_memory=60, likelihood_min=2)
    values = _series(400, seed=2)
    scorer = SeriesScorer(settings, W)
    for i in range(W - 1, values.size):
        window = values[i - W + 1 : i + 1]
        got = scorer.step(0.0, window).novelty
        # the scorer remembers each window's newest point; the candidates are the windows of
        # the last novelty_memory + 2W - 1 remembered points that end W or more points ago
        remembered = values[W - 1 : i]
        lo = max(0, remembered.size - (settings.novelty_memory + 2 * W - 1))
        candidates = remembered[lo : max(remembered.size - W + 1, 0)]
        if candidates.size < W:
            assert math.isnan(got)
            continue
        brute = np.sqrt(((sliding_window_view(candidates, W) - window) ** 2).sum(1).min())
        assert got == pytest.approx(brute, rel=1e-9, abs=1e-9)


def test_scores_mean_the_same_on_a_series_a_thousand_times_larger():
    settings = StreamScoring(likelihood_window=500, novelty_memory=300, suppress_points=50)
    values = _series(1_500, seed=3)
    values[1_200] += 3.0
    residuals = np.abs(np.random.default_rng(4).standard_normal(values.size)) * 0.1
    small = _run(SeriesScorer(settings, W), values, residuals)
    large = _run(SeriesScorer(settings, W), values * 1000.0, residuals * 1000.0)
    np.testing.assert_allclose([s.anomaly for s in small], [s.anomaly for s in large], atol=1e-9)
    assert max(s.anomaly for s in small) == max(s.anomaly for s in small[1_200 - W + 1 :][:5])


def test_the_model_part_is_calibrated_on_normal_noise():
    """On i.i.d. Gaussian residuals, P(part >= surprise(z_q)) is close to 1 - q."""
    settings = StreamScoring(likelihood_window=2_000, likelihood_min=500, suppress_points=1)
    rng = np.random.default_rng(5)
    n = 20_000
    residuals = rng.standard_normal(n)
    scorer = SeriesScorer(settings, W)
    window = np.zeros(W)
    parts = np.array([scorer.step(float(r), window).model_part for r in residuals])[600:]
    for q in (0.9, 0.99):
        rate = float((parts >= surprise(norm.ppf(q))).mean())
        assert rate == pytest.approx(1.0 - q, rel=0.25), (q, rate)


def test_a_long_excursion_scores_once_at_its_onset_unless_it_gets_worse():
    values = _series(2_000, seed=6)
    values[1_500:1_700] += 2.0  # a level shift lasting 200 points
    residuals = np.full(values.size, 0.05)
    residuals[1_500:1_700] = 2.0
    suppressed = _run(SeriesScorer(StreamScoring(suppress_points=1_000), W), values, residuals)
    every = _run(SeriesScorer(StreamScoring(suppress_points=1), W), values, residuals)
    offset = W - 1
    high = [i + offset for i, s in enumerate(suppressed) if s.anomaly > 0.3]
    assert high and all(1_500 <= i < 1_510 for i in high), high
    assert sum(s.anomaly > 0.3 for s in every) > 3 * len(high)
    # suppression never changes the fused score, only what is emitted
    np.testing.assert_allclose([s.fused for s in suppressed], [s.fused for s in every])


def test_a_restored_scorer_continues_exactly_where_the_snapshot_left_off():
    settings = StreamScoring(likelihood_window=700, novelty_memory=400, suppress_points=300)
    values = _series(3_000, seed=7)
    residuals = np.abs(np.random.default_rng(8).standard_normal(values.size))
    straight = _run(SeriesScorer(settings, W), values, residuals)
    first = SeriesScorer(settings, W)
    _run(first, values[:1_600], residuals[:1_600])
    snapshot = json.loads(json.dumps(first.snapshot()))
    second = SeriesScorer(settings, W)
    second.restore(snapshot)
    resumed = _run(second, values, residuals, start=1_600)
    np.testing.assert_allclose(
        [s.anomaly for s in resumed], [s.anomaly for s in straight[1_600 - W + 1 :]], atol=1e-12
    )


def test_a_malformed_snapshot_is_refused():
    scorer = SeriesScorer(StreamScoring(), W)
    for bad in (
        {"model": [[1.0, float("nan"), 1.0]]},
        {"points": "not base64!"},
        {"recent": scorer.snapshot()["points"]},
    ):
        with pytest.raises(ValueError, match="stream scoring snapshot"):
            scorer.restore(scorer.snapshot() | bad)
    with pytest.raises(KeyError):
        scorer.restore({})


def test_memory_stays_bounded_on_a_long_stream():
    settings = StreamScoring(likelihood_window=200, novelty_memory=100, suppress_points=50)
    scorer = SeriesScorer(settings, W)
    values = _series(5_000, seed=9)
    _run(scorer, values, np.abs(values))
    snapshot = scorer.snapshot()
    assert len(base64.b64decode(snapshot["points"])) == 8 * (100 + 2 * W)
    assert len(snapshot["model"]) == len(snapshot["novelty"]) == 2  # one full block + partial
    assert len(base64.b64decode(snapshot["recent"])) == 8 * 49
    full = SeriesScorer(StreamScoring(), 32)
    long_values = _series(6_000, seed=10)
    for i in range(32, long_values.size):
        full.step(abs(float(long_values[i])), long_values[i - 32 : i])
    assert 50_000 < len(json.dumps(full.snapshot())) < 70_000  # the README's figure


@pytest.mark.parametrize(
    "values",
    [
        {"likelihood_window": 10, "likelihood_min": 20},
        {"likelihood_min": 1},
        {"novelty_memory": 0},
        {"suppress_points": 0},
    ],
)
def test_invalid_settings_are_refused(values):
    with pytest.raises(ValueError, match="invalid stream scoring"):
        StreamScoring(**values)


def test_wild_inputs_never_put_a_non_finite_value_in_the_state():
    settings = StreamScoring(likelihood_window=300, likelihood_min=20, novelty_memory=100)
    scorer = SeriesScorer(settings, W)
    values = _series(600, seed=11)
    wild = {200: math.inf, 201: -math.inf, 202: math.nan, 203: 1e300}
    for i in range(W - 1, values.size):
        window = values[i - W + 1 : i + 1].copy()
        residual = abs(float(window[-1]))
        if i in wild:
            window[-1], residual = wild[i], wild[i]
        step = scorer.step(residual, window)
        assert all(math.isfinite(v) for v in step[:4]) and 0.0 <= step.anomaly <= 1.0
        assert i < 2 * W + W or math.isfinite(step.novelty)
    SeriesScorer(settings, W).restore(json.loads(json.dumps(scorer.snapshot())))  # all finite
