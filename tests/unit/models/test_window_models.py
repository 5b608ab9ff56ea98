"""Masked ELBO, missing-point injection and the 1-D convolutional window VAEs."""

from __future__ import annotations

import numpy as np
import torch

from streamvae.models import VAE, Conv1dVAE, Conv1dVAEConfig, VAEConfig
from streamvae.scoring.windows import score_windows
from streamvae.training import TrainConfig, fit


def sine_windows(n: int = 400, w: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    t = np.arange(w)[None, :]
    return (np.sin(2 * np.pi * t / 12 + phase) + 0.05 * rng.normal(size=(n, w))).astype(np.float32)


def test_masked_inputs_add_nothing_to_the_reconstruction_terms():
    model = VAE(VAEConfig(input_dim=5)).eval()
    x = torch.randn(3, 5)
    with torch.no_grad():
        out = model(x)
    mask = torch.tensor([[1, 1, 0, 1, 1]] * 3, dtype=torch.float32)
    changed = x.clone()
    changed[:, 2] += 100.0  # a wild value where the point is missing
    a, b = model.elbo_terms(x, out, mask), model.elbo_terms(changed, out, mask)
    torch.testing.assert_close(a.recon_nll, b.recon_nll)
    assert float(b.squared_error[:, 2].abs().sum()) == 0.0
    assert float(model.elbo_terms(changed, out).recon_nll.mean()) > float(a.recon_nll.mean())


def test_conv1d_vae_learns_windows():
    x = sine_windows(512)
    config = Conv1dVAEConfig(input_dim=24, latent_dim=4, channels=(8, 16), hidden_dims=(32,))
    train = TrainConfig(epochs=30, batch_size=32, patience=0, seed=0)
    model, fitted = fit(lambda: Conv1dVAE(config), x, train)
    assert fitted.history[-1]["train_recon_nll"] < fitted.history[0]["train_recon_nll"]
    test = sine_windows(200, seed=1)
    recon = model(torch.from_numpy(test)).recon.detach().numpy()
    assert float(np.mean((recon - test) ** 2)) < 0.1 * float(test.var())


def test_missing_injection_teaches_the_model_to_fill_gaps():
    x = sine_windows(512)
    config = VAEConfig(input_dim=24, latent_dim=4, hidden_dims=(64, 32))
    test = sine_windows(200, seed=1)
    mask = np.ones_like(test)
    mask[:, 8:12] = 0.0  # four points missing in every window
    gap_error = {}
    for rate in (0.0, 0.2):
        train = TrainConfig(epochs=30, batch_size=32, patience=0, seed=0, missing_injection=rate)
        model, _ = fit(lambda: VAE(config), x, train)
        recon = model(torch.from_numpy(test * mask)).recon.detach().numpy()
        gap_error[rate] = float(np.mean((recon[:, 8:12] - test[:, 8:12]) ** 2))
    assert gap_error[0.2] < 0.8 * gap_error[0.0]


def test_score_windows_hides_the_newest_point_so_a_jump_is_not_copied_through():
    x = sine_windows(512)
    config = VAEConfig(input_dim=24, latent_dim=4, hidden_dims=(64, 32))
    train = TrainConfig(epochs=40, batch_size=32, patience=0, seed=0, missing_injection=0.05)
    model, _ = fit(lambda: VAE(config), x, train)
    test = sine_windows(100, seed=2)
    jumped = test.copy()
    jumped[:, -1] += 3.0
    mask = np.ones_like(test)
    normal = score_windows(model, test, mask)
    hidden = score_windows(model, jumped, mask)
    shown = score_windows(model, jumped, mask, hide_last=False)
    assert np.median(hidden.residual) > 2.0 > np.median(normal.residual)
    assert np.median(hidden.residual) > np.median(shown.residual)
    np.testing.assert_array_equal(normal.observed, np.ones(100))
