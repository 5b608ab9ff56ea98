"""Per-feature explanations of a model with one learned decoder variance per feature."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from streamvae.bundle import ModelBundle, TabularDetector, TabularPreprocess
from streamvae.data import FeatureSchema, StandardScaler
from streamvae.models import VAE, VAEConfig
from streamvae.training import TrainConfig, fit
from tests.factories import feature_names


def _data(n: int, seed: int) -> np.ndarray:
    """f0 = f1 (tightly tied: predictable), f2 independent noise (unpredictable)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return np.stack([a, a + 0.01 * rng.normal(size=n), rng.normal(size=n)], 1).astype(np.float32)


def test_errors_are_weighed_by_each_feature_s_learned_precision():
    x = _data(2000, 0)
    scaler = StandardScaler.fit(x)
    config = VAEConfig(
        input_dim=3, latent_dim=2, hidden_dims=(16,), learn_variance=True, per_feature_variance=True
    )
    train = TrainConfig(epochs=60, patience=0, seed=0, device="cpu", learning_rate=3e-3)
    model, _ = fit(lambda: VAE(config), scaler.transform(x), train)
    preprocess = TabularPreprocess(FeatureSchema(feature_names(3)), scaler)
    bundle = ModelBundle("vae", asdict(config), model.state_dict(), preprocess)
    det = TabularDetector(bundle)
    gamma = model.effective_log_gamma.detach().exp().double().numpy()
    assert gamma[0] < 0.2 * gamma[2]  # the tied feature is held tightly, the noise is not
    # the same 2-sigma step: breaking the f0 = f1 tie vs a large but ordinary noise value
    probe = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]], dtype=np.float32) * scaler.scale
    probe += np.asarray(scaler.mean, dtype=np.float32)
    scored = det.score(probe).scores
    with torch.inference_mode():
        scaled = torch.from_numpy(scaler.transform(probe))
        squared = (scaled - model(scaled).recon).pow(2).double().numpy()
    np.testing.assert_allclose(scored.per_feature, squared / gamma, rtol=1e-5)
    np.testing.assert_allclose(scored.recon_error, squared.sum(1), rtol=1e-5)  # unweighted
    # the broken tie is what explains the first row; ordinary noise barely registers
    assert int(np.argmax(scored.per_feature[0])) in (0, 1)
    assert scored.per_feature[0].max() > 5 * scored.per_feature[1].max()
