"""Fitting the fused score on a trained bundle: what the index holds, what the tails see."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamvae.bundle.fusion import with_fusion
from streamvae.bundle.tabular import TabularPreprocess
from tests.factories import make_bundle, make_normal

HELD_OUT = np.arange(0, 100, dtype=np.intp)


@pytest.fixture(scope="module")
def plain():
    return make_bundle(epochs=5, calibrated=False)


def _scaled(bundle, raw):
    assert isinstance(bundle.preprocess, TabularPreprocess)
    return bundle.preprocess.scaler.transform(raw)


def test_the_index_holds_the_early_stopping_rows_and_their_distances_leave_them_out(plain):
    raw = make_normal(500, 6, 0)
    fused = with_fusion(plain, raw, HELD_OUT, score_kind="fused", k=1, max_rows=10_000, seed=0)
    index = fused.fusion.index
    np.testing.assert_array_equal(index.rows, _scaled(plain, raw))  # all 500, held-out too
    # the neighbour tail was fitted on each held-out row's distance to its nearest *other* row
    scaled = _scaled(plain, raw)
    brute = np.sqrt(((scaled[HELD_OUT, None, :] - scaled[None, :, :]) ** 2).sum(-1))
    brute[np.arange(HELD_OUT.size), HELD_OUT] = np.inf
    expected = np.quantile(brute.min(axis=1), 0.9)
    assert fused.fusion.neighbour_tail.threshold == pytest.approx(expected, rel=1e-3)
    # and a fresh row's score uses the whole index
    fresh = torch.from_numpy(_scaled(plain, make_normal(20, 6, 9)))
    assert (index.distances(fresh).numpy() > 0).all()


def test_a_capped_index_samples_every_row_and_leaves_out_only_those_it_holds(plain):
    raw = make_normal(500, 6, 0)
    fused = with_fusion(plain, raw, HELD_OUT, score_kind="fused", k=2, max_rows=200, seed=3)
    rows = fused.fusion.index.rows
    assert rows.shape == (200, 6)
    scaled = _scaled(plain, raw)
    held = {tuple(r) for r in scaled[HELD_OUT]}
    assert any(tuple(r) in held for r in rows)  # the sample draws from the held-out rows too
    again = with_fusion(plain, raw, HELD_OUT, score_kind="fused", k=2, max_rows=200, seed=3)
    np.testing.assert_array_equal(again.fusion.index.rows, rows)


def test_too_few_rows_for_k_is_refused_in_one_line(plain):
    raw = make_normal(12, 6, 0)
    with pytest.raises(ValueError, match="neighbours k=12 needs more than 12 indexed rows"):
        with_fusion(plain, raw, np.arange(10), score_kind="fused", k=12, max_rows=100, seed=0)


def _brute_loo(points: np.ndarray, held: np.ndarray) -> np.ndarray:
    d = np.sqrt(((points[held, None, :] - points[None, :, :]) ** 2).sum(-1))
    d[np.arange(held.size), held] = np.inf
    return d.min(axis=1)


def test_the_views_measure_the_distance_under_min_max_and_iqr_scaling_of_the_raw_rows(plain):
    """Each view's distance is the plain Euclidean distance after scaling the *raw* training
    rows by their range (min-max) or interquartile range, and its tail is fitted on the
    held-out rows' leave-one-out distances in that scaling."""
    rng = np.random.default_rng(4)
    raw = make_normal(500, 6, 0) * np.array([1, 5, 0.1, 30, 1, 2], np.float32)
    raw[:, 2] = rng.lognormal(size=500).astype(np.float32)  # skewed: range and IQR differ
    fused = with_fusion(plain, raw, HELD_OUT, score_kind="fused", k=1, max_rows=10_000, seed=0)
    views = {view.name: view for view in fused.fusion.views}
    assert sorted(views) == ["iqr", "minmax"]
    raw64 = raw.astype(np.float64)
    spreads = {
        "minmax": raw64.max(0) - raw64.min(0),
        "iqr": np.subtract(*np.quantile(raw64, [0.75, 0.25], axis=0)),
    }
    fresh_raw = make_normal(30, 6, 9) * 3.0
    fresh = torch.from_numpy(_scaled(plain, fresh_raw))
    for name, spread in spreads.items():
        rescaled = raw64 / spread
        query = fresh_raw.astype(np.float64) / spread
        brute = np.sqrt(((query[:, None, :] - rescaled[None, :, :]) ** 2).sum(-1)).min(axis=1)
        got = views[name].distances(fresh).double().numpy()
        np.testing.assert_allclose(got, brute, rtol=1e-3)
        expected = np.quantile(_brute_loo(rescaled, HELD_OUT), 0.9)
        assert views[name].tail.threshold == pytest.approx(expected, rel=1e-3)


def test_the_fused_score_adds_every_view_s_surprise(plain):
    raw = make_normal(500, 6, 0)
    fused = with_fusion(plain, raw, HELD_OUT, score_kind="fused", k=1, max_rows=10_000, seed=0)
    fusion = fused.fusion
    fresh_raw = make_normal(40, 6, 5) * 2.0
    x = torch.from_numpy(_scaled(plain, fresh_raw))
    from streamvae.bundle.tabular import TabularDetector

    scores = TabularDetector(fused).score(fresh_raw).scores
    with torch.inference_mode():
        views = fusion.view_distances(x)
    expected = fusion.elbo_tail.surprise(scores.neg_elbo) + fusion.neighbour_tail.surprise(
        scores.neighbour
    )
    expected = expected + sum(v.tail.surprise(d) for v, d in zip(fusion.views, views, strict=True))
    np.testing.assert_allclose(scores.fused, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="this fusion has 2 views, got 0 distances"):
        fusion.fuse(scores.neg_elbo, scores.neighbour)
