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
    NeighbourView,
    ScoreFusion,
    TailModel,
    leave_one_out_distances,
    sample_positions,
    sample_rows,
    view_factors,
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


def test_leave_one_out_distances_leave_out_each_indexed_row_and_only_those():
    rng = np.random.default_rng(6)
    rows = rng.normal(size=(120, 4)).astype(np.float32)
    rows[7] = rows[3]  # a duplicate: its leave-one-out distance is 0, as a repeat's would be
    picked = np.array([3, 7, 10, 50, 119])
    queries = np.concatenate([rows[picked], rng.normal(size=(6, 4)).astype(np.float32)])
    indexed = np.array([True] * picked.size + [False] * 6)
    for k in (1, 3):
        got = leave_one_out_distances(
            NeighbourIndex(rows, k, chunk_size=16), torch.from_numpy(queries), indexed
        )
        for i, q in enumerate(queries):
            others = np.delete(rows, picked[i], axis=0) if indexed[i] else rows
            brute = np.sort(np.sqrt(((others - q) ** 2).sum(axis=1)))[k - 1]
            assert got[i] == pytest.approx(brute, abs=1e-3)
    assert got[0] == pytest.approx(got[1])  # rows 3 and 7, each finding the other
    first = leave_one_out_distances(NeighbourIndex(rows, 1), torch.from_numpy(queries), indexed)
    assert first[0] == pytest.approx(0.0, abs=1e-3)


def test_leave_one_out_reference_distances_calibrate_fresh_rows():
    """Tails fitted on indexed rows' leave-one-out distances give fresh rows uniform p-values.

    A row's distance to its nearest *other* indexed row is distributed as a fresh row's
    distance to the index (exchangeability), so the neighbour part stays calibrated with
    the reference rows inside the index. Measured without leaving out, every reference
    distance would be 0 and every fresh row maximally surprising.
    """
    rng = np.random.default_rng(7)
    rows = rng.standard_t(5, size=(3000, 3)).astype(np.float32)
    index = NeighbourIndex(rows, 1)
    reference = leave_one_out_distances(
        index, torch.from_numpy(rows[:1500]), np.ones(1500, dtype=bool)
    )
    fresh = rng.standard_t(5, size=(1500, 3)).astype(np.float32)
    p = np.exp(
        -TailModel.fit(reference).surprise(
            index.distances(torch.from_numpy(fresh)).double().numpy()
        )
    )
    assert stats.kstest(p, "uniform").pvalue > 0.01
    naive = index.distances(torch.from_numpy(rows[:1500])).double().numpy()
    assert float(naive.max()) < 0.01 < float(np.quantile(reference, 0.01))  # 0 up to rounding


def test_sample_positions_are_sorted_distinct_and_seeded():
    a, b = sample_positions(1000, 50, seed=3), sample_positions(1000, 50, seed=3)
    assert np.array_equal(a, b) and np.array_equal(a, np.unique(a)) and a.size == 50
    assert not np.array_equal(a, sample_positions(1000, 50, seed=4))


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


def test_view_factors_are_the_inverse_spreads_with_a_fallback_for_flat_features():
    rng = np.random.default_rng(6)
    rows = rng.normal(size=(200, 4)).astype(np.float32)
    rows[:, 1] = 0.0  # constant: no spread at all
    rows[:150, 2] = 1.0  # its IQR is 0 but it varies: falls back to the standard deviation
    f = view_factors(rows, "minmax")
    assert f[0] == pytest.approx(1.0 / float(rows[:, 0].max() - rows[:, 0].min()))
    assert f[1] == 1.0
    g = view_factors(rows, "iqr")
    q75, q25 = np.quantile(rows[:, 3].astype(np.float64), [0.75, 0.25])
    assert g[3] == pytest.approx(1.0 / (q75 - q25), rel=1e-6)
    assert g[2] == pytest.approx(1.0 / float(rows[:, 2].astype(np.float64).std()), rel=1e-6)
    assert g[1] == 1.0
    with pytest.raises(ValueError, match="unknown neighbour view 'rank'"):
        view_factors(rows, "rank")


def test_a_fusion_with_views_round_trips_and_one_without_reads_as_before():
    rng = np.random.default_rng(7)
    rows = rng.normal(size=(40, 3)).astype(np.float32)
    index = NeighbourIndex(rows, 1)
    factors = np.array([0.5, 2.0, 1.0], np.float32)
    view = NeighbourView.over(index, "minmax", factors, TailModel.fit(rng.gamma(2, size=100)))
    fusion = ScoreFusion(
        index,
        TailModel.fit(rng.normal(size=100)),
        TailModel.fit(rng.gamma(2, size=100)),
        views=(view,),
    )
    x = torch.from_numpy(rng.normal(size=(5, 3)).astype(np.float32))
    brute = np.sqrt(((x.numpy()[:, None] * factors - rows[None] * factors) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(fusion.view_distances(x)[0], brute, rtol=1e-5)
    again = ScoreFusion.from_parts(fusion.to_dict(), rows)
    a, b, c = np.array([0.0, 3.0]), np.array([1.0, 9.0]), np.array([0.5, 4.0])
    np.testing.assert_allclose(again.fuse(a, b, view_distances=[c]), fusion.fuse(a, b, None, [c]))
    np.testing.assert_allclose(
        fusion.fuse(a, b, None, [c]),
        fusion.elbo_tail.surprise(a) + fusion.neighbour_tail.surprise(b) + view.tail.surprise(c),
    )
    older = {k: v for k, v in fusion.to_dict().items() if k != "views"}
    before = ScoreFusion.from_parts(older, rows)  # a bundle written before views existed
    assert before.views == ()
    np.testing.assert_allclose(
        before.fuse(a, b), fusion.elbo_tail.surprise(a) + fusion.neighbour_tail.surprise(b)
    )
    bad = fusion.to_dict() | {"views": [view.to_dict() | {"factors": [1.0, -1.0, 1.0]}]}
    with pytest.raises(ValueError, match="needs 3 positive factors"):
        ScoreFusion.from_parts(bad, rows)


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
