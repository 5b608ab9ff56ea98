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
