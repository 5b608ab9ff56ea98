"""Pixel anomaly maps on real images: scikit-learn's digits with pasted anomalies."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from streamvae.models import Conv2dVAE, Conv2dVAEConfig
from streamvae.scoring.maps import MAP_KINDS, MapEnsemble, pixel_auroc, pixel_maps, project
from streamvae.training import TrainConfig, fit

SHAPE = (1, 16, 16)


def digits() -> np.ndarray:
    """The 1,797 digits, 8x8 upsampled to 16x16, in [0, 1], flat."""
    images = load_digits().images / 16.0
    return np.kron(images, np.ones((2, 2))).reshape(len(images), -1).astype(np.float32)


def paste_patches(images: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright 4x4 noise patch at a random place of each image; the patch is the mask."""
    rng = np.random.default_rng(seed)
    out = images.reshape(-1, 16, 16).copy()
    masks = np.zeros(out.shape, bool)
    for i in range(len(out)):
        r, c = rng.integers(0, 12, size=2)
        out[i, r : r + 4, c : c + 4] = rng.uniform(0.6, 1.0, size=(4, 4))
        masks[i, r : r + 4, c : c + 4] = True
    return out.reshape(len(out), -1), masks


@pytest.fixture(scope="module")
def model():
    x = digits()[:1400]
    config = Conv2dVAEConfig(image_height=16, image_width=16, channels=(8, 16), latent_dim=8)
    trained, _ = fit(
        lambda: Conv2dVAE(config), x, TrainConfig(epochs=25, batch_size=64, learning_rate=3e-3,
                                                  patience=0, seed=0, device="cpu"),
    )  # fmt: skip
    return trained.eval()


@pytest.fixture(scope="module")
def anomalous():
    return paste_patches(digits()[1400:1500])


def test_every_map_has_the_image_shape_and_is_deterministic(model, anomalous):
    images, _ = anomalous
    first = pixel_maps(model, images[:10], SHAPE, MAP_KINDS, proj_steps=5)
    again = pixel_maps(model, images[:10], SHAPE, MAP_KINDS, proj_steps=5, batch_size=3)
    for kind in MAP_KINDS:
        assert first[kind].shape == (10, 16, 16) and np.isfinite(first[kind]).all(), kind
        assert np.allclose(first[kind], again[kind], rtol=1e-4, atol=1e-6), kind
    assert np.allclose(first["combi"], first["kl_grad"] * first["rec_error"], rtol=1e-5)


def test_maps_localise_a_pasted_patch(model, anomalous):
    images, masks = anomalous
    maps = pixel_maps(model, images, SHAPE, ("rec_error", "rec_grad", "elbo_grad"))
    for kind, floor in (("rec_error", 0.75), ("rec_grad", 0.75), ("elbo_grad", 0.75)):
        assert pixel_auroc(maps[kind], masks) >= floor, kind
    peaks = maps["rec_error"].reshape(len(images), -1).argmax(axis=1)
    assert masks.reshape(len(images), -1)[np.arange(len(images)), peaks].mean() >= 0.5


def test_the_projection_restores_the_image_towards_normal(model, anomalous):
    import torch

    images, masks = anomalous
    x0 = torch.as_tensor(images[:20])
    projected = project(model, x0, steps=60).numpy().reshape(-1, 16, 16)
    moved = np.abs(projected - images[:20].reshape(-1, 16, 16))
    assert moved[masks[:20]].mean() > 2 * moved[~masks[:20]].mean(), "it edits the patch most"


def test_the_ensemble_fitted_on_a_few_labelled_images_is_at_least_as_good(model, anomalous):
    images, masks = anomalous
    kinds = ("rec_error", "kl_grad", "rec_grad")
    maps = pixel_maps(model, images, SHAPE, kinds)
    labelled = {k: v[:20] for k, v in maps.items()}
    ensemble = MapEnsemble(kinds).fit(labelled, masks[:20])
    held_out = {k: v[20:] for k, v in maps.items()}
    combined = pixel_auroc(ensemble.predict(held_out), masks[20:])
    best = max(pixel_auroc(held_out[k], masks[20:]) for k in kinds)
    assert combined >= best - 0.02


def test_bad_requests_are_refused(model):
    with pytest.raises(ValueError, match="unknown map kind"):
        pixel_maps(model, np.zeros((1, 256), np.float32), SHAPE, ("nope",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected images of shape"):
        pixel_maps(model, np.zeros((1, 100), np.float32), SHAPE)
    with pytest.raises(ValueError, match="both anomalous and normal"):
        MapEnsemble(("rec_error",)).fit({"rec_error": np.ones((1, 2, 2), np.float32)},
                                        np.zeros((1, 2, 2), bool))  # fmt: skip
