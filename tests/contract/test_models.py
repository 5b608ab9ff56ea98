"""Every registered model family meets the same contract (river's check_estimator idea)."""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from streamvae.bundle import Detector, ModelBundle, TabularPreprocess, load_bundle, save_bundle
from streamvae.data import FeatureSchema, StandardScaler
from streamvae.models import MODEL_REGISTRY, BaseVAE, build_model, config_from_dict
from streamvae.scoring import roc_auc
from streamvae.training import TrainConfig, fit
from tests.factories import feature_names, make_anomalies, make_normal

D = 6
KEYS = sorted(MODEL_REGISTRY)


def _default(key: str) -> BaseVAE:
    return build_model(key, config_from_dict(key, {"input_dim": D}))


@pytest.mark.parametrize("key", KEYS, ids=KEYS)
def test_builds_from_default_config_with_finite_outputs_of_the_right_shape(key):
    model = _default(key).eval()
    x = torch.randn(5, D)
    out = model(x)
    assert out.recon.shape == (5, D)
    terms = model.elbo_terms(x, out)
    for name, value in terms._asdict().items():
        assert torch.isfinite(value).all(), name
    assert terms.recon_nll.shape == terms.kl.shape == (5,)
    assert (terms.kl > 0).all() and (terms.recon_nll > 0).all(), "no loss term may be switched off"


@pytest.mark.parametrize("key", KEYS, ids=KEYS)
def test_loss_goes_down_in_a_few_steps(key):
    torch.manual_seed(0)
    model = _default(key)
    x = torch.from_numpy(StandardScaler.fit(make_normal(256)).transform(make_normal(256)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = model.loss(x, model(x)).loss
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first


@pytest.fixture(scope="module", params=KEYS, ids=KEYS)
def trained(request):
    key = request.param
    x = make_normal(600, D)
    scaler = StandardScaler.fit(x)
    config = config_from_dict(key, {"input_dim": D, "latent_dim": 2, "hidden_dims": (16,)})
    model, _ = fit(
        lambda: build_model(key, config),
        scaler.transform(x),
        TrainConfig(epochs=40, device="cpu", seed=1),
    )
    return ModelBundle(
        key,
        asdict(config),
        model.state_dict(),
        TabularPreprocess(FeatureSchema(feature_names(D)), scaler),
    )


def test_scores_deterministically_in_eval_mode(trained):
    x = make_normal(50, D, seed=4)
    assert np.array_equal(
        Detector(trained).score(x).scores.neg_elbo, Detector(trained).score(x).scores.neg_elbo
    )


def test_scores_identically_after_bundle_round_trip(trained):
    x = np.vstack([make_normal(30, D, seed=5), make_anomalies(5, D)])
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_bundle(save_bundle(trained, Path(tmp) / "b"))
    for kind in ("neg_elbo", "recon_error", "kl"):
        assert np.array_equal(
            Detector(trained).score(x).scores.select(kind),
            Detector(loaded).score(x).scores.select(kind),
        )


def test_reaches_the_auroc_floor_on_seeded_synthetic_anomalies(trained):
    x = np.vstack([make_normal(300, D, seed=7), make_anomalies(60, D, seed=8)])
    y = np.r_[np.zeros(300), np.ones(60)]
    det = Detector(trained)
    assert roc_auc(y, det.score(x).scores.neg_elbo) >= 0.9
