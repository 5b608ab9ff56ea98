"""The fused score's parts: tail model, neighbour index, fusion (closed forms and brute force)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from streamvae.scoring.fusion import (
    TAIL_LEVEL,
    NeighbourIndex,
    ScoreFusion,
    TailModel,
    sample_rows,
)


def test_tail_body_is_the_empirical_survival():
    ref = np.random.default_rng(0).normal(size=5000)
    tail = TailModel.fit(ref)
    for s in (-1.0, 0.0, 0.5, 1.0):
        assert s < tail.threshold
        p = math.exp(-float(tail.surprise(np.array([s]))[0]))
        assert p == pytest.approx(float(np.mean(ref > s)), abs=0.01)


def test_tail_beyond_the_threshold_is_exponential_in_closed_form():
    ref = np.random.default_rng(1).exponential(scale=2.0, size=20_000)
    tail = TailModel.fit(ref)
    t = float(np.quantile(ref, TAIL_LEVEL))
    assert tail.threshold == pytest.approx(t)
    # exponential data: the mean excess over any threshold is the scale (memorylessness)
    assert tail.mean_excess == pytest.approx(2.0, rel=0.05)
    s = np.array([t + 1.0, t + 10.0, t + 100.0])
    expected = -math.log(1 - TAIL_LEVEL) + (s - t) / tail.mean_excess
    np.testing.assert_allclose(tail.surprise(s), expected)
    # and the fitted tail matches the true survival of the exponential beyond t
    true_p = np.exp(-(t + 4.0) / 2.0)
    assert math.exp(-float(tail.surprise(np.array([t + 4.0]))[0])) == pytest.approx(
        true_p, rel=0.15
    )


def test_surprise_is_continuous_monotone_and_never_ties_beyond_the_reference():
    ref = np.random.default_rng(2).gamma(2.0, size=500)
    tail = TailModel.fit(ref)
    grid = np.linspace(ref.min() - 1, ref.max() * 5, 2001)
    out = tail.surprise(grid)
    assert np.all(np.diff(out) >= 0)
    beyond = grid > ref.max()
    assert np.all(np.diff(out[beyond]) > 0)  # far anomalies are still ranked
    eps = 1e-9
    left, right = tail.surprise(np.array([tail.threshold - eps, tail.threshold + eps]))
    assert left == pytest.approx(right, abs=1e-6)
    assert right == pytest.approx(-math.log(1 - TAIL_LEVEL), abs=1e-6)
    assert tail.surprise(np.array([np.nan]))[0] == np.inf


def test_tail_refuses_too_few_or_non_finite_references():
    with pytest.raises(ValueError, match="at least 10"):
        TailModel.fit(np.arange(5.0))
    with pytest.raises(ValueError, match="finite"):
        TailModel.fit(np.array([*range(20), np.inf], dtype=float))


def test_tail_of_a_constant_reference_stays_finite():
    tail = TailModel.fit(np.full(50, 3.0))
    out = tail.surprise(np.array([2.0, 3.0, 3.5]))
    assert np.all(np.isfinite(out)) and out[2] > out[1]


def test_fused_p_values_of_fresh_normals_are_uniform():
    """Each part's p-value, fitted on reference normals, is uniform on other normals."""
    rng = np.random.default_rng(3)
    tail = TailModel.fit(rng.lognormal(size=4000))
    fresh = rng.lognormal(size=4000)
    p = np.exp(-tail.surprise(fresh))
    assert stats.kstest(p, "uniform").pvalue > 0.01


def test_neighbour_distances_match_brute_force():
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(300, 5)).astype(np.float32)
    queries = rng.normal(size=(50, 5)).astype(np.float32)
    full = np.sqrt(((queries[:, None, :] - rows[None, :, :]) ** 2).sum(-1))
    for k in (1, 5):
        index = NeighbourIndex(rows, k, chunk_size=7)
        got = index.distances(torch.from_numpy(queries)).numpy()
        np.testing.assert_allclose(got, np.sort(full, axis=1)[:, k - 1], rtol=1e-4, atol=1e-4)
    assert index.nbytes == rows.nbytes


def test_neighbour_index_checks_k():
    rows = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="k=4"):
        NeighbourIndex(rows, 4)
    assert NeighbourIndex(rows, 1).distances(torch.zeros(0, 2)).shape == (0,)


def test_sample_rows_keeps_small_sets_and_samples_large_ones_reproducibly():
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    assert sample_rows(x, 100, seed=0) is x
    a, b = sample_rows(x, 10, seed=0), sample_rows(x, 10, seed=0)
    assert a.shape == (10, 2) and np.array_equal(a, b)
    assert len({tuple(r) for r in a}) == 10  # without replacement


def test_fusion_round_trips_and_adds_the_two_surprises():
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(40, 3)).astype(np.float32)
    fusion = ScoreFusion(
        NeighbourIndex(rows, 2),
        TailModel.fit(rng.normal(size=100)),
        TailModel.fit(rng.gamma(2, size=100)),
    )
    again = ScoreFusion.from_parts(fusion.to_dict(), rows)
    a, b = np.array([0.0, 3.0]), np.array([1.0, 9.0])
    np.testing.assert_allclose(again.fuse(a, b), fusion.fuse(a, b))
    np.testing.assert_allclose(
        fusion.fuse(a, b), fusion.elbo_tail.surprise(a) + fusion.neighbour_tail.surprise(b)
    )
    assert again.index.k == 2


def test_an_image_fusion_takes_the_larger_likelihood_surprise_and_round_trips_it():
    rng = np.random.default_rng(4)
    rows = rng.random((30, 16)).astype(np.float32)
    fusion = ScoreFusion(
        NeighbourIndex(rows, 1),
        TailModel.fit(rng.normal(size=100)),
        TailModel.fit(rng.gamma(2, size=100)),
        TailModel.fit(rng.normal(loc=-50.0, size=100)),
    )
    again = ScoreFusion.from_parts(fusion.to_dict(), rows)
    # row 0: the ELBO is unsurprising but the corrected likelihood is (a simple image);
    # row 1: the other way round (a noisy one): either surprise counts, the larger one
    a, b, c = np.array([0.0, 3.0]), np.array([1.0, 9.0]), np.array([-45.0, -50.0])
    elbo = fusion.elbo_tail.surprise(a)
    corrected = fusion.complexity_tail.surprise(c)  # type: ignore[union-attr]
    assert corrected[0] > elbo[0] and elbo[1] > corrected[1]
    expected = np.maximum(elbo, corrected) + fusion.neighbour_tail.surprise(b)
    np.testing.assert_allclose(fusion.fuse(a, b, c), expected)
    np.testing.assert_allclose(again.fuse(a, b, c), expected)
    with pytest.raises(ValueError, match="complexity-corrected"):
        fusion.fuse(a, b)
