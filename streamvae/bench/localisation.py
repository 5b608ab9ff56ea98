"""The pixel-localisation benchmark on real images: digits with pasted anomalies.

Normal images: scikit-learn's digits upsampled to 32x32 (built in). A convolutional VAE
learns them; held-out normal digits get one local anomaly each (a noise square, a bright
blob, or a piece of another digit) whose ground-truth mask is known. Every predictor's
pixel map is scored by its pixel-wise AUROC over the held-out set; the logistic-regression
ensemble is fitted on a small labelled subset and evaluated on the rest. The grid runs over
beta and the latent size, as the paper's table does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from streamvae.bundle.image import ImageDetector
from streamvae.data.images import builtin_digits, paste_anomalies
from streamvae.scoring.maps import MAP_KINDS, MapEnsemble, MapKind, pixel_auroc
from streamvae.workflows.images import ImageSettings, train_images


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalisationSettings:
    """The benchmark grid and its budget."""

    betas: tuple[float, ...] = (0.1, 1.0, 10.0)
    latent_dims: tuple[int, ...] = (16, 64)
    size: int = 32
    test_images: int = 200
    labelled: int = 20  # images of the test set the ensemble is fitted on
    epochs: int = 40
    proj_steps: int = 50
    seed: int = 0


@dataclass(frozen=True, slots=True)
class LocalisationRow:
    """Pixel AUROC of every predictor for one (beta, latent size)."""

    beta: float
    latent_dim: int
    auroc: dict[str, float]
    train_s: float
    maps_s: float


def run_localisation(
    settings: LocalisationSettings, say: Callable[[str], None] = lambda _: None
) -> list[LocalisationRow]:
    """Train one model per grid cell and score every predictor's maps."""
    images, _ = builtin_digits(settings.size)
    order = np.random.default_rng(settings.seed).permutation(len(images))
    test_idx, train_idx = order[: settings.test_images], order[settings.test_images :]
    corrupted, masks, _ = paste_anomalies(images[test_idx], seed=settings.seed + 1)
    flat = corrupted.reshape(len(corrupted), -1)
    rows = []
    for beta in settings.betas:
        for latent in settings.latent_dims:
            started = time.monotonic()
            bundle = train_images(
                images[train_idx],
                ImageSettings(
                    latent_dim=latent, beta=beta, epochs=settings.epochs, seed=settings.seed,
                    learning_rate=2e-3, device="auto", map_kinds=("rec_error",),
                ),
            )  # fmt: skip
            trained = time.monotonic()
            detector = ImageDetector(bundle, device="cpu")
            maps = detector.maps(flat, MAP_KINDS, proj_steps=settings.proj_steps)
            rows.append(_row(beta, latent, maps, masks, settings.labelled, started, trained))
            say(f"beta={beta} latent={latent}: {rows[-1].auroc}")
    return rows


def _row(
    beta: float,
    latent: int,
    maps: dict[MapKind, np.ndarray],
    masks: np.ndarray,
    labelled: int,
    started: float,
    trained: float,
) -> LocalisationRow:
    test = slice(labelled, None)
    auroc: dict[str, float] = {k: pixel_auroc(v[test], masks[test]) for k, v in maps.items()}
    ensemble = MapEnsemble(tuple(MAP_KINDS)).fit(
        {k: v[:labelled] for k, v in maps.items()}, masks[:labelled]
    )
    auroc["ensemble"] = pixel_auroc(
        ensemble.predict({k: v[test] for k, v in maps.items()}), masks[test]
    )
    done = time.monotonic()
    return LocalisationRow(beta, latent, auroc, trained - started, done - trained)


def table(rows: Sequence[LocalisationRow]) -> str:
    """The rows as a markdown table (pixel AUROC per predictor)."""
    kinds = [*MAP_KINDS, "ensemble"]
    lines = [
        "| beta | latent | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
    ]
    for row in rows:
        cells = " | ".join(f"{row.auroc[k]:.3f}" for k in kinds)
        lines.append(f"| {row.beta:g} | {row.latent_dim} | {cells} |")
    return "\n".join(lines)
