"""CUDA checks, run on a machine with a GPU (`pytest -m gpu`); deselected elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamvae.bundle import TabularDetector
from streamvae.models import VAE, VAEConfig
from streamvae.training import TrainConfig, fit
from streamvae.training.fit import uses_mixed_precision
from tests.factories import make_bundle, make_normal

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.fail("the gpu marker was selected but no CUDA device is available")


def test_auto_device_trains_on_cuda():
    model, result = fit(
        lambda: VAE(VAEConfig(input_dim=6)), make_normal(256), TrainConfig(epochs=2)
    )
    assert result.device.startswith("cuda")
    assert next(model.parameters()).is_cuda
    assert uses_mixed_precision(TrainConfig(), result.device)
    assert all(np.isfinite(list(h.values())).all() for h in result.history)


def test_cuda_scores_match_cpu_scores():
    bundle = make_bundle(epochs=3)
    x = make_normal(64, seed=2)
    cpu = TabularDetector(bundle).score(x).scores.neg_elbo
    gpu = TabularDetector(bundle, device="cuda").score(x).scores.neg_elbo
    assert np.allclose(cpu, gpu, rtol=1e-4)
