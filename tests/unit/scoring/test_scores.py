from __future__ import annotations

import numpy as np
import pytest
import torch

from streamvae.models import ElboTerms
from streamvae.scoring import concat_score_sets, score_set, top_contributions


def _terms() -> ElboTerms:
    sq = torch.tensor([[1.0, 4.0], [0.0, 0.25]])
    return ElboTerms(
        recon_nll=torch.tensor([3.0, 1.0]),
        kl=torch.tensor([0.5, 2.0]),
        per_feature_nll=torch.zeros(2, 2),
        squared_error=sq,
    )


def test_score_set_combines_terms():
    scores = score_set(_terms())
    assert scores.neg_elbo.tolist() == [3.5, 3.0]
    assert scores.recon_error.tolist() == [5.0, 0.25]
    assert scores.kl.tolist() == [0.5, 2.0]
    assert scores.neg_elbo.dtype == np.float64
    assert scores.select("kl") is scores.kl
    with pytest.raises(ValueError, match="unknown score kind"):
        scores.select("bogus")  # type: ignore[arg-type]


def test_concat_keeps_order():
    both = concat_score_sets([score_set(_terms()), score_set(_terms())])
    assert both.neg_elbo.tolist() == [3.5, 3.0, 3.5, 3.0]
    assert both.per_feature.shape == (4, 2)
    with pytest.raises(ValueError, match="nothing"):
        concat_score_sets([])


def test_top_contributions_orders_and_shares():
    per_feature = np.array([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0]])
    idx, share = top_contributions(per_feature, 5)
    assert idx.shape == (2, 3)
    assert idx[0].tolist() == [1, 0, 2]
    assert share[0].tolist() == [0.75, 0.25, 0.0]
    assert share[1].tolist() == [0.0, 0.0, 0.0], "an all-zero row has no shares, not NaN"
