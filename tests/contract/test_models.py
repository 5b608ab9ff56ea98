"""Every registered model family meets the same contract (river's check_estimator idea).

The cases cover every registry key and the configurations the research issue names
(learnable decoder variance); conditional families are trained and scored with context.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from streamvae.bundle import (
    ModelBundle,
    TabularDetector,
    TabularPreprocess,
    load_bundle,
    save_bundle,
)
from streamvae.bundle.fusion import with_fusion
from streamvae.data import FeatureSchema, StandardScaler, context_matrix, fit_context
from streamvae.models import MODEL_REGISTRY, BaseVAE, build_model, config_from_dict, model_spec
from streamvae.scoring import roc_auc
from streamvae.training import BetaSchedule, TrainConfig, fit
from streamvae.types import SCORE_KINDS
from tests.factories import feature_names, make_anomalies, make_contextual

D = 6
CONTEXT = {"cond_numeric": 1, "cond_categories": (3,)}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "vae": ("vae", {}),
    "vae-learned-gamma": ("vae", {"learn_variance": True}),
    "vae-feature-gamma": ("vae", {"learn_variance": True, "per_feature_variance": True}),
    "sparse_vae": ("sparse_vae", {}),
    "cvae": ("cvae", CONTEXT),
    "dcvae": ("dcvae", CONTEXT),
    "conv1d_vae": ("conv1d_vae", {}),
    "conv1d_cvae": ("conv1d_cvae", CONTEXT),
    # images travel flat (C*H*W pixels): the same contract holds pixel by pixel
    "conv2d_vae": ("conv2d_vae", {"image_height": 8, "image_width": 8, "channels": (4, 8)}),
    "conv2d_vae_stem-learned-gamma": (
        "conv2d_vae_stem",
        {"image_height": 8, "image_width": 8, "channels": (4, 8), "learn_variance": True},
    ),
}
IDS = sorted(CASES)


def test_every_registered_family_has_a_case():
    assert {key for key, _ in CASES.values()} == set(MODEL_REGISTRY)


def _cond(n: int, key: str) -> torch.Tensor | None:
    if not model_spec(key).conditional:
        return None
    return torch.stack([torch.randn(n), torch.randint(0, 3, (n,)).float()], dim=1)


def _dim(case: str) -> int:
    """Input width of a case: D features, or the C*H*W pixels of an image case."""
    _, extra = CASES[case]
    return int(extra.get("image_height", 1) * extra.get("image_width", D))


def _default(case: str) -> tuple[str, BaseVAE]:
    key, extra = CASES[case]
    return key, build_model(key, config_from_dict(key, {"input_dim": _dim(case), **extra}))


@pytest.mark.parametrize("case", IDS)
def test_builds_from_default_config_with_finite_outputs_of_the_right_shape(case):
    key, model = _default(case)
    model.eval()
    x = torch.randn(5, _dim(case))
    out = model(x, _cond(5, key))
    assert out.recon.shape == (5, _dim(case))
    terms = model.elbo_terms(x, out)
    for name, value in terms._asdict().items():
        assert torch.isfinite(value).all(), name
    assert terms.recon_nll.shape == terms.kl.shape == (5,)
    assert (terms.kl > 0).all() and (terms.recon_nll > 0).all(), "no loss term may be switched off"


@pytest.mark.parametrize("case", IDS)
def test_conditional_families_refuse_to_run_without_a_condition(case):
    key, model = _default(case)
    d = _dim(case)
    if model_spec(key).conditional:
        with pytest.raises(ValueError, match="needs a condition"):
            model(torch.randn(2, d))
    else:
        assert model(torch.randn(2, d)).recon.shape == (2, d)


@pytest.mark.parametrize("case", IDS)
def test_loss_goes_down_in_a_few_steps(case):
    torch.manual_seed(0)
    key, model = _default(case)
    x_raw, _frame = make_contextual(256, _dim(case))
    x = torch.from_numpy(StandardScaler.fit(x_raw).transform(x_raw))
    cond = _cond(256, key)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = model.loss(x, model(x, cond)).loss
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first


def _train(case: str) -> ModelBundle:
    key, extra = CASES[case]
    d = _dim(case)
    x, frame = make_contextual(800, d)
    scaler = StandardScaler.fit(x)
    conditional = model_spec(key).conditional
    context = fit_context(frame, ("hour",), ("channel",)) if conditional else None
    raw_ctx = context_matrix(context, frame) if context is not None else None
    ctx_scaler = StandardScaler.fit(raw_ctx[:, :1]) if raw_ctx is not None else None
    preprocess = TabularPreprocess(FeatureSchema(feature_names(d)), scaler, context, ctx_scaler)
    cond = preprocess.condition(raw_ctx) if raw_ctx is not None else None
    values = {"input_dim": d, "latent_dim": 3, "hidden_dims": (32,), **extra}
    config = config_from_dict(key, values)
    model, result = fit(
        lambda: build_model(key, config),
        scaler.transform(x),
        TrainConfig(epochs=60, device="cpu", seed=1, beta_schedule=BetaSchedule(kind="linear")),
        cond=cond,
    )
    bundle = ModelBundle(key, asdict(config), model.state_dict(), preprocess, is_samples=16)
    # every family carries the neighbour index, so every score kind is checked
    return with_fusion(
        bundle, x, result.val_rows, score_kind="neg_elbo", k=3, max_rows=500, seed=0,
        context=raw_ctx,
    )  # fmt: skip


@pytest.fixture(scope="module", params=IDS)
def trained(request) -> ModelBundle:
    return _train(request.param)


def _width(bundle: ModelBundle) -> int:
    return int(bundle.model_config["input_dim"])


def _rows(bundle: ModelBundle, x: np.ndarray, frame) -> tuple[np.ndarray, np.ndarray | None]:
    context = bundle.preprocess.context
    return x, None if context is None else context_matrix(context, frame)


def test_scores_deterministically_in_eval_mode(trained):
    x, ctx = _rows(trained, *make_contextual(50, _width(trained), seed=4))
    first = TabularDetector(trained).score(x, ctx, sampled=True).scores
    # a different chunking must not change any row's score (fixed importance draws)
    second = TabularDetector(trained, chunk_size=7).score(x, ctx, sampled=True).scores
    for kind in SCORE_KINDS:
        assert np.allclose(first.select(kind), second.select(kind), rtol=1e-4, atol=1e-5), kind


def test_scores_identically_after_bundle_round_trip(trained):
    x_norm, frame = make_contextual(30, _width(trained), seed=5)
    x, ctx = _rows(trained, x_norm, frame)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_bundle(save_bundle(trained, Path(tmp) / "b"))
    assert loaded.preprocess == trained.preprocess
    for kind in SCORE_KINDS:
        assert np.array_equal(
            TabularDetector(trained).score(x, ctx, sampled=True).scores.select(kind),
            TabularDetector(loaded).score(x, ctx, sampled=True).scores.select(kind),
        ), kind


def test_reaches_the_auroc_floor_on_seeded_synthetic_anomalies(trained):
    x_norm, frame = make_contextual(300, _width(trained), seed=7)
    x_bad = make_anomalies(60, _width(trained), seed=8)
    x = np.vstack([x_norm, x_bad])
    frame = pl.concat([frame, frame.head(60)])
    y = np.r_[np.zeros(300), np.ones(60)]
    det = TabularDetector(trained)
    scores = det.score(*_rows(trained, x, frame), sampled=True).scores
    assert roc_auc(y, scores.neg_elbo) >= 0.9
    assert roc_auc(y, scores.select("fused")) >= 0.9
    # the Sparse VAE's KL approximates an improper log-uniform prior; its is_nll uses N(0, I)
    # instead (see importance_nll), a looser fit, hence a lower floor
    floor = 0.8 if trained.model_key == "sparse_vae" else 0.9
    assert roc_auc(y, scores.select("is_nll")) >= floor
