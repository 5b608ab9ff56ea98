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

from streamvae.scoring.stream_scores import (
    TAIL_LEVEL,
    RecentValues,
    SeriesScorer,
    StreamScoring,
    decades_of,
    log_tail_probability,
    surprise_of,
)

W = 8


def _series(n: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return scale * (np.sin(2 * np.pi * t / 50) + 0.1 * rng.standard_normal(n))


def _run(scorer: SeriesScorer, values: np.ndarray, residuals: np.ndarray, start: int = W - 1):
    steps = range(start, len(values))
    return [scorer.step(float(residuals[i]), values[i - W + 1 : i + 1]) for i in steps]


@pytest.mark.parametrize("p", [1.0, 0.5, 0.1, 1e-3, 1e-10, 1e-300])
def test_surprise_is_the_closed_form_of_the_tail_probability(p):
    assert surprise_of(math.log(p)) == pytest.approx(1.0 - math.exp(math.log10(p) / 10.0))


def test_surprise_is_monotone_and_inside_zero_one():
    values = [surprise_of(lp) for lp in np.linspace(2.0, -2000.0, 2000)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert surprise_of(1.0) == 0.0  # a log-probability above 0 (rounding) is no surprise


def test_the_tail_body_is_the_empirical_survival():
    held = np.random.default_rng(0).normal(size=5_000)
    t = float(np.quantile(held, TAIL_LEVEL))
    for v in (-2.0, 0.0, 0.7, t):
        expected = (np.count_nonzero(held >= v) + 1) / (held.size + 1)
        assert math.exp(log_tail_probability(held, v)) == pytest.approx(expected)


def test_the_tail_beyond_the_quantile_is_exponential_in_closed_form():
    held = np.random.default_rng(1).exponential(scale=2.0, size=20_000)
    t = float(np.quantile(held, TAIL_LEVEL))
    m = float((held[held > t] - t).mean())
    assert m == pytest.approx(2.0, rel=0.05)  # exponential data: memoryless excess
    for v in (t + 1.0, t + 10.0, t + 100.0):
        expected = math.log(1.0 - TAIL_LEVEL) - (v - t) / m
        assert log_tail_probability(held, v) == pytest.approx(expected)
    # and it follows the true survival of the exponential beyond t
    assert math.exp(log_tail_probability(held, t + 6.0)) == pytest.approx(
        math.exp(-(t + 6.0) / 2.0), rel=0.2
    )
    # continuous at t: the body's last value and the tail's first agree
    below, above = log_tail_probability(held, t), log_tail_probability(held, t + 1e-9)
    assert math.exp(below) == pytest.approx(math.exp(above), abs=1e-3)


def test_a_heavy_tailed_series_bursts_are_less_surprising_than_a_gaussian_would_say():
    """The reason for the empirical tail: on a bursty (log-normal) part, a burst at the
    99.9th percentile of the series' own history gets p ~ 1e-4 (the exponential tail is a
    little lighter than the log-normal's), where a Gaussian fitted to the same values gives
    it p ~ 1e-25."""
    held = np.random.default_rng(2).lognormal(sigma=1.2, size=8_640)
    burst = float(np.quantile(held, 0.999))
    p = math.exp(log_tail_probability(held, burst))
    assert 1e-5 < p < 1e-2
    z = (burst - held.mean()) / held.std()
    assert 0.5 * math.erfc(z / math.sqrt(2.0)) < 1e-12


def test_a_constant_part_stays_finite():
    held = np.full(500, 3.0)
    assert math.exp(log_tail_probability(held, 3.0)) == pytest.approx(1.0)
    assert math.isfinite(log_tail_probability(held, 3.5)) and log_tail_probability(held, 3.5) < -100


def test_recent_values_hold_the_latest_values_and_round_trip():
    data = np.random.default_rng(3).gamma(2.0, 3.0, 2_500) + 1e4
    ring = RecentValues(300)
    for i, value in enumerate(data):
        ring.add(float(value))
        assert ring.count == min(i + 1, 300)
        if i % 97 == 0 or i == data.size - 1:
            held = data[max(0, i + 1 - 300) : i + 1].astype(np.float32)
            np.testing.assert_array_equal(np.sort(ring.held()), np.sort(held))
    restored = RecentValues(300)
    restored.load(json.loads(json.dumps(ring.state())))
    np.testing.assert_array_equal(np.sort(restored.held()), np.sort(ring.held()))
    restored.add(1.0)  # the oldest value goes first, as in the original
    ring.add(1.0)
    np.testing.assert_array_equal(np.sort(restored.held()), np.sort(ring.held()))
    with pytest.raises(ValueError, match="other settings"):
        RecentValues(10).load(ring.state())
    with pytest.raises(TypeError, match="base64 text"):
        RecentValues(10).load([[1.0, 2.0, 3.0]])  # a snapshot of the previous format


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
    # the parts' recent values are held as float32: a thousand times larger rounds differently
    np.testing.assert_allclose([s.anomaly for s in small], [s.anomaly for s in large], atol=1e-7)
    assert max(s.anomaly for s in small) == max(s.anomaly for s in small[1_200 - W + 1 :][:5])


def test_the_model_part_is_calibrated_on_normal_noise():
    """On i.i.d. residuals, P(part >= surprise_of(log(1 - q))) is close to 1 - q."""
    settings = StreamScoring(likelihood_window=2_000, likelihood_min=500, suppress_points=1)
    rng = np.random.default_rng(5)
    n = 20_000
    residuals = rng.standard_normal(n)
    scorer = SeriesScorer(settings, W)
    window = np.zeros(W)
    parts = np.array([scorer.step(float(r), window).model_part for r in residuals])[600:]
    for q in (0.9, 0.99):
        rate = float((parts >= surprise_of(math.log(1.0 - q))).mean())
        assert rate == pytest.approx(1.0 - q, rel=0.3), (q, rate)
    # beyond the body, the exponential tail is conservative on light-tailed (Gaussian) noise
    assert float((parts >= surprise_of(math.log(1e-3))).mean()) <= 1e-3


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
    assert sum(s.anomaly > 0.1 for s in every) > 3 * len(high)
    assert sum(s.anomaly > 0.1 for s in suppressed) == len(high)
    # suppression never changes the fused score, only what is emitted
    np.testing.assert_allclose([s.fused for s in suppressed], [s.fused for s in every])


@pytest.mark.parametrize("decades", [0.0, 1e-3, 3.0, 30.0])
def test_decades_invert_the_surprise(decades):
    assert decades_of(surprise_of(-decades * math.log(10.0))) == pytest.approx(decades, rel=1e-6)


def _rising_excursion() -> tuple[np.ndarray, np.ndarray]:
    """A level shift that keeps growing for 300 points: every point is a new high."""
    values = _series(2_400, seed=12)
    residuals = np.abs(np.random.default_rng(13).standard_normal(values.size)) * 0.1
    ramp = np.linspace(0.3, 6.0, 300)
    values[1_800:2_100] += ramp
    residuals[1_800:2_100] += ramp
    return values, residuals


def test_a_slowly_worsening_excursion_is_emitted_again_only_when_clearly_worse():
    values, residuals = _rising_excursion()
    horizon = 1_000
    every_high = _run(
        SeriesScorer(StreamScoring(suppress_points=horizon, escalation_decades=0.0), W),
        values, residuals,
    )  # fmt: skip
    escalating = _run(SeriesScorer(StreamScoring(suppress_points=horizon), W), values, residuals)
    step = StreamScoring().escalation_decades
    assert step > 0
    np.testing.assert_allclose([s.fused for s in escalating], [s.fused for s in every_high])
    old = [i for i, s in enumerate(every_high) if s.anomaly > 0]
    new = [i for i, s in enumerate(escalating) if s.anomaly > 0]
    assert set(new) <= set(old), "the rule only ever holds back a score"
    offset = 1_800 - W + 1
    in_excursion_old = [i for i in old if i >= offset]
    in_excursion_new = [i for i in new if i >= offset]
    assert len(in_excursion_old) >= 3 * len(in_excursion_new) >= 6, (old, new)
    # within the horizon every emitted score is at least `step` decades above the one before
    for a, b in itertools.pairwise(new):
        if b - a < horizon:
            gain = decades_of(escalating[b].anomaly) - decades_of(escalating[a].anomaly)
            assert gain >= step - 1e-12, (a, b, gain)
    # the excursion's onset is still emitted at once (a point later here: an emitted
    # background score 20 points before opened an incident) and so is its worst stretch
    assert 0 <= in_excursion_new[0] - in_excursion_old[0] <= 2
    top = max(escalating[i].fused for i in range(offset, offset + 300))
    assert decades_of(max(s.anomaly for s in escalating)) > decades_of(top) - step


def test_an_open_incident_survives_a_snapshot():
    """Restored right after an emitted score, a slightly higher one is still held back."""
    values, residuals = _rising_excursion()
    settings = StreamScoring(suppress_points=1_000)
    straight = _run(SeriesScorer(settings, W), values, residuals)
    emitted = [i for i, s in enumerate(straight) if s.anomaly > 0 and i >= 1_800 - W + 1]
    cut = emitted[1] + W  # a point index just after the excursion's second emitted score
    first = SeriesScorer(settings, W)
    _run(first, values[:cut], residuals[:cut])
    snapshot = json.loads(json.dumps(first.snapshot()))
    assert snapshot["alert"][0] == 0 and snapshot["alert"][1] > 0
    second = SeriesScorer(settings, W)
    second.restore(snapshot)
    resumed = _run(second, values, residuals, start=cut)
    np.testing.assert_array_equal(
        [s.anomaly for s in resumed], [s.anomaly for s in straight[cut - W + 1 :]]
    )
    forgetful = SeriesScorer(settings, W)
    forgetful.restore({k: v for k, v in snapshot.items() if k != "alert"})  # an older snapshot
    reopened = _run(forgetful, values, residuals, start=cut)
    assert sum(s.anomaly > 0 for s in reopened) > sum(s.anomaly > 0 for s in resumed)


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
        {"model": base64.b64encode(np.array([1.0, np.nan], "<f4").tobytes()).decode()},
        {"points": "not base64!"},
        {"recent": scorer.snapshot()["points"]},
        {"alert": [1, -2.0]},
        {"alert": [1]},
        {"alert": "1, 2"},
        {"alert": [True, 1.0]},
        {"alert": [1, math.inf]},
        {"alert": [1, 10**400]},
        {"alert": [math.nan, 1.0]},
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
    assert len(base64.b64decode(snapshot["model"])) == 4 * 200  # the last 200 values, float32
    assert len(base64.b64decode(snapshot["novelty"])) == 4 * 200
    assert len(base64.b64decode(snapshot["recent"])) == 8 * 49
    full = SeriesScorer(StreamScoring(), 32)
    long_values = _series(9_000, seed=10)  # past likelihood_window (8,640): every ring full
    for i in range(32, long_values.size):
        full.step(abs(float(long_values[i])), long_values[i - 32 : i])
    assert 140_000 < len(json.dumps(full.snapshot())) < 155_000  # the README's figure


@pytest.mark.parametrize(
    "values",
    [
        {"likelihood_window": 10, "likelihood_min": 20},
        {"likelihood_min": 1},
        {"novelty_memory": 0},
        {"suppress_points": 0},
        {"escalation_decades": -0.5},
        {"escalation_decades": math.inf},
        {"escalation_decades": math.nan},
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


def test_settings_written_before_the_escalation_rule_get_its_default():
    old = {k: v for k, v in StreamScoring().to_dict().items() if k != "escalation_decades"}
    assert StreamScoring.from_dict(old) == StreamScoring()
    assert StreamScoring.from_dict(StreamScoring(escalation_decades=1.5).to_dict()) == (
        StreamScoring(escalation_decades=1.5)
    )
