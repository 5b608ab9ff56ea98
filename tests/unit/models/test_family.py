"""The math behind the research model family (trade-off, learnable variance, dCVAE)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from streamvae.data import StandardScaler
from streamvae.models import (
    CVAE,
    DCVAE,
    VAE,
    ConditionalVAEConfig,
    SparseVAE,
    VAEConfig,
    build_model,
    config_from_dict,
    importance_nll,
    latent_noise,
)
from streamvae.models.losses import kl_gaussians, kl_standard_normal, kl_variational_dropout
from streamvae.training import BetaSchedule, TrainConfig, fit
from tests.factories import make_normal


def _scaled(n: int = 512, d: int = 6, seed: int = 0) -> np.ndarray:
    x = make_normal(n, d, seed)
    return StandardScaler.fit(x).transform(x)


def test_kl_between_gaussians_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, lv, pm, plv = (torch.randn(4, 3, generator=g) for _ in range(4))
    ours = kl_gaussians(mu, lv, pm, plv)
    ref = kl_divergence(Normal(mu, (0.5 * lv).exp()), Normal(pm, (0.5 * plv).exp()))
    assert torch.allclose(ours, ref, atol=1e-5)
    zeros = torch.zeros_like(mu)
    assert torch.allclose(kl_gaussians(mu, lv, zeros, zeros).sum(1), kl_standard_normal(mu, lv))


def test_variational_dropout_kl_matches_molchanovs_formula_and_falls_with_alpha():
    log_alpha = torch.linspace(-6, 6, 25)
    k1, k2, k3 = 0.63576, 1.87320, 1.48695
    alpha = log_alpha.exp()
    neg_kl = k1 * torch.sigmoid(k2 + k3 * log_alpha) - 0.5 * torch.log1p(1 / alpha) - k1
    kl = kl_variational_dropout(log_alpha)
    assert torch.allclose(kl, -neg_kl, atol=1e-5)
    assert (kl.diff() < 0).all() and (kl > 0).all()


def _fit_gamma_only(model: VAE, x: torch.Tensor, *, steps: int) -> None:
    """Train ``log_gamma`` alone on ``x``, the decoder held fixed."""
    for name, param in model.named_parameters():
        param.requires_grad_(name == "log_gamma")
    opt = torch.optim.Adam([model.log_gamma], lr=0.05)
    for _ in range(steps):
        loss = model.loss(x, model(x)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_learned_gamma_converges_to_the_mean_squared_error_per_dimension():
    """Learnable variance: for a fixed decoder the optimal gamma is the MSE per dimension."""
    torch.manual_seed(0)
    model = VAE(VAEConfig(input_dim=6, latent_dim=2, learn_variance=True)).eval()
    x = torch.from_numpy(_scaled())
    _fit_gamma_only(model, x, steps=600)
    with torch.no_grad():
        mse = float((x - model(x).recon).pow(2).mean())
    gamma = float(model.log_gamma.detach().exp())
    assert gamma == pytest.approx(mse, rel=0.01)
    assert model.training_metrics()["gamma"] == pytest.approx(gamma)


def test_per_feature_gamma_converges_to_each_feature_s_mean_squared_error():
    """Heteroscedastic across features: the optimal gamma_j is feature j's MSE."""
    torch.manual_seed(0)
    config = VAEConfig(input_dim=6, latent_dim=2, learn_variance=True, per_feature_variance=True)
    model = VAE(config).eval()
    assert model.log_gamma.shape == (6,)
    x = torch.from_numpy(_scaled()) * torch.tensor([0.1, 0.3, 1.0, 2.0, 4.0, 8.0])
    _fit_gamma_only(model, x, steps=800)
    with torch.no_grad():
        mse = (x - model(x).recon).pow(2).mean(dim=0)
        gamma = model.log_gamma.exp()
        # the per-feature NLL is the closed-form Gaussian one with that feature's gamma
        out = model(x)
        nll = model.elbo_terms(x, out).per_feature_nll
        closed = 0.5 * ((x - out.recon).pow(2) / gamma + gamma.log() + math.log(2 * math.pi))
    torch.testing.assert_close(gamma, mse, rtol=0.02, atol=1e-4)
    torch.testing.assert_close(nll, closed, rtol=1e-5, atol=1e-5)
    assert model.training_metrics()["gamma"] == pytest.approx(float(gamma.log().mean().exp()))


def test_image_models_refuse_per_feature_gamma():
    with pytest.raises(ValueError, match="per_feature_variance"):
        config_from_dict(
            "conv2d_vae",
            {"image_height": 8, "image_width": 8, "channels": (4,), "learn_variance": True,
             "per_feature_variance": True},
        )  # fmt: skip


@pytest.mark.parametrize("model_key", ["conv2d_vae", "conv2d_vae_stem"])
@pytest.mark.parametrize(("height", "width"), [(28, 28), (13, 30)])
def test_image_models_take_any_size_and_only_score_its_own_pixels(model_key, height, width):
    config = config_from_dict(
        model_key,
        {"image_height": height, "image_width": width, "latent_dim": 4, "learn_variance": True},
    )
    model = build_model(model_key, config).eval()
    x = torch.rand(3, height * width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
        terms = model.elbo_terms(x, out)
    # the reconstruction and its likelihood cover the image's own pixels, no padding
    assert out.recon.shape == (3, height * width)
    assert terms.per_feature_nll.shape == (3, height * width)
    torch.testing.assert_close(terms.per_feature_nll.sum(dim=1), terms.recon_nll)


def test_padding_a_28x28_digit_is_the_same_network_as_a_32x32_one_padded_by_hand():
    small = config_from_dict("conv2d_vae", {"image_height": 28, "image_width": 28})
    large = config_from_dict("conv2d_vae", {"image_height": 32, "image_width": 32})
    torch.manual_seed(0)
    model28 = build_model("conv2d_vae", small).eval()
    model32 = build_model("conv2d_vae", large).eval()
    model32.load_state_dict(model28.state_dict())
    x = torch.rand(2, 28, 28, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2)).flatten(1)
    with torch.no_grad():
        recon28 = model28(x.flatten(1)).recon.view(2, 28, 28)
        recon32 = model32(padded).recon.view(2, 32, 32)
    torch.testing.assert_close(recon28, recon32[:, 2:30, 2:30])


def test_learned_gamma_is_logged_per_epoch_and_shrinks_as_the_fit_improves():
    config = VAEConfig(input_dim=6, latent_dim=2, hidden_dims=(32,), learn_variance=True)
    cfg = TrainConfig(
        epochs=20, patience=0, device="cpu", seed=0, learning_rate=1e-2, batch_size=64
    )
    _, result = fit(lambda: VAE(config), _scaled(), cfg)
    gammas = [h["gamma"] for h in result.history]
    # starts at 1 (log gamma = 0) and shrinks towards the reconstruction error
    assert gammas[-1] < 0.5 * gammas[0]


def test_cyclical_beta_schedule_drives_the_loss_and_is_logged_per_epoch():
    schedule = BetaSchedule(kind="cyclical", cycles=2, ratio=0.5)
    config = VAEConfig(input_dim=6, latent_dim=2, hidden_dims=(16,), beta=4.0)
    cfg = TrainConfig(epochs=8, patience=0, device="cpu", beta_schedule=schedule)
    _, result = fit(lambda: VAE(config), _scaled(), cfg)
    betas = [h["beta"] for h in result.history]
    # the beta of each epoch's last step: 410 training rows = 4 steps of 128, so that step
    # is at t = (epoch + 3/4) / 8; rising over the first half of each cycle, then held
    assert betas == pytest.approx([1.5, 3.5, 4.0, 4.0, 1.5, 3.5, 4.0, 4.0])
    # the training loss is weighted by the scheduled beta; validation by the full beta
    first = result.history[0]
    assert first["train_loss"] < first["train_recon_nll"] + 4.0 * first["train_kl"]
    assert first["val_loss"] == pytest.approx(first["val_recon_nll"] + 4.0 * first["val_kl"])


def test_sparse_vae_skips_pruned_dimensions_at_scoring():
    model = SparseVAE(VAEConfig(input_dim=6, latent_dim=4)).eval()
    with torch.no_grad():
        model.log_alpha.copy_(torch.tensor([-2.0, 0.5, -1.0, 3.0]))
    x = torch.randn(10, 6)
    out = model(x)
    assert model.pruned_dims() == [1, 3]
    assert torch.equal(out.z[:, [1, 3]], torch.zeros(10, 2))
    kl = model.elbo_terms(x, out).kl
    expected = kl_variational_dropout(torch.tensor([-2.0, -1.0])).sum()
    assert torch.allclose(kl, expected.expand(10))
    model.train()  # training still pays for every dimension
    assert float(model.elbo_terms(x, model(x)).kl[0]) > float(expected)


class _HalfDeafSparseVAE(SparseVAE):
    """A Sparse VAE whose decoder cannot read latent dimensions 2.. (their weights are 0)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        first = self.decoder[0]
        with torch.no_grad():
            first.weight[:, 2:] = 0.0
        first.weight.register_hook(lambda g: torch.cat([g[:, :2], torch.zeros_like(g[:, 2:])], 1))


def test_sparse_vae_prunes_the_latent_dimensions_the_decoder_does_not_use():
    """The KL pushes alpha up everywhere; only reconstruction holds a dimension's alpha down."""
    config = VAEConfig(input_dim=6, latent_dim=6, hidden_dims=(32,))
    cfg = TrainConfig(epochs=60, patience=0, device="cpu", seed=0, learning_rate=1e-2)
    model, result = fit(lambda: _HalfDeafSparseVAE(config), _scaled(1024), cfg)
    assert isinstance(model, SparseVAE)
    assert model.pruned_dims() == [2, 3, 4, 5]
    assert result.history[-1]["active_dims"] == 2


def _trained(kind: str) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor | None]:
    x = _scaled(900)
    rng = np.random.default_rng(0)
    cond = np.stack([rng.normal(size=900), rng.integers(0, 3, 900)], 1).astype(np.float32)
    cfg = TrainConfig(epochs=20, patience=0, device="cpu", seed=0)
    base = {"input_dim": 6, "latent_dim": 3, "hidden_dims": (32,)}
    if kind in ("cvae", "dcvae"):
        ccfg = ConditionalVAEConfig(**base, cond_numeric=1, cond_categories=(3,))
        cls = CVAE if kind == "cvae" else DCVAE
        model, _ = fit(lambda: cls(ccfg), x[:600], cfg, cond=cond[:600])
        return model, torch.from_numpy(x[600:]), torch.from_numpy(cond[600:])
    vcfg = VAEConfig(**base, learn_variance=kind == "vae-learned-gamma")
    model, _ = fit(lambda: VAE(vcfg), x[:600], cfg)
    return model, torch.from_numpy(x[600:]), None


@pytest.mark.parametrize("kind", ["vae", "vae-learned-gamma", "cvae", "dcvae"])
def test_importance_sampled_nll_is_at_most_the_negative_elbo_and_falls_with_k(kind):
    """Burda et al.: E[-log p_K] <= -ELBO, and it does not increase with K (on average)."""
    model, x, cond = _trained(kind)

    def mean_nll(k: int) -> float:
        # the K draws are shared by every row, so average over several independent sets
        seeds = range(1000 * k, 1000 * k + max(4, 400 // k))
        return float(
            torch.stack(
                [importance_nll(model, x, cond, latent_noise(k, 3, seed=s)).nll for s in seeds]
            ).mean()
        )

    with torch.no_grad():
        reference = importance_nll(model, x, cond, latent_noise(4000, 3, seed=99))
        neg_elbo = float(reference.neg_elbo.mean())  # Monte Carlo -ELBO, 4000 samples
        means = [mean_nll(k) for k in (1, 5, 50, 500)]
    tolerance = 0.02  # Monte Carlo error of the means
    assert means[0] == pytest.approx(neg_elbo, abs=tolerance)  # K = 1 is the ELBO
    assert all(m <= neg_elbo + tolerance for m in means)
    assert all(b <= a + tolerance for a, b in itertools.pairwise(means))
    assert means[-1] < neg_elbo  # and K = 500 is strictly tighter


def test_importance_scores_do_not_depend_on_the_batch_a_row_arrives_in():
    model, x, _ = _trained("vae")
    noise = latent_noise(32, 3)
    with torch.no_grad():
        whole = importance_nll(model, x, None, noise).nll
        parts = torch.cat([importance_nll(model, c, None, noise).nll for c in x.split(7)])
    assert torch.allclose(whole, parts, atol=1e-4)


def test_width_multiplier_scales_every_network():
    narrow = VAE(VAEConfig(input_dim=6, hidden_dims=(64, 32), width=0.5))
    wide = VAE(VAEConfig(input_dim=6, hidden_dims=(64, 32), width=2.0))
    assert narrow.encoder[0].out_features == 32 and wide.encoder[0].out_features == 128
    assert wide.decoder[-2].out_features == 128
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(wide) > 3 * count(narrow)


def test_dcvae_learns_a_prior_that_depends_on_the_condition():
    model, x, cond = _trained("dcvae")
    assert cond is not None
    with torch.no_grad():
        out = model(x, cond)
    assert out.prior_mu is not None and out.prior_logvar is not None
    by_class = [out.prior_mu[cond[:, 1] == c].mean(0) for c in range(3)]
    assert not torch.allclose(by_class[0], by_class[1], atol=1e-3)


def test_a_fused_image_model_refuses_too_few_images_before_training():
    from streamvae.errors import DataError
    from streamvae.workflows.images import ImageSettings, train_images

    images = np.random.default_rng(0).random((40, 1, 8, 8), dtype=np.float32)
    settings = ImageSettings(channels=(4,), latent_dim=2, epochs=1, device="cpu")
    # 40 images: 32 to learn from, of which 6 stop early: too few to fit the fused tails
    with pytest.raises(DataError, match="at least 10 early-stopping images; 40 images leave 6"):
        train_images(images, settings)
