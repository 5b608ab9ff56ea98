"""Train, calibrate and register image models (convolutional VAEs on normal images)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from streamvae.bundle import ModelBundle
from streamvae.bundle.image import ImageDetector, ImagePreprocess
from streamvae.config import TrackingSettings
from streamvae.data.images import F32, ImageShape
from streamvae.errors import DataError
from streamvae.models import build_model, config_from_dict, model_spec
from streamvae.scoring.maps import MAP_KINDS, MapKind
from streamvae.thresholds import CalibrationSpec, calibrate_set
from streamvae.training import TrainConfig, TrainingCallback, fit
from streamvae.types import NEIGHBOUR_SCORE_KINDS, SCORE_KINDS, ScoreKind
from streamvae.workflows.publish import TrainOutcome, train_logged

IMAGE_MODELS = ("conv2d_vae", "conv2d_vae_stem")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageSettings:
    """How to train and calibrate an image model.

    Attributes:
        model: ``conv2d_vae`` (fully convolutional, §3) or ``conv2d_vae_stem`` (§4).
        latent_dim: latent size.
        channels: feature maps of the stride-2 convolutions (default: the family's).
        width: capacity multiplier of every feature map.
        beta: KL weight (beta-VAE above 1).
        learn_variance: train the decoder variance gamma (default: a fixed unit variance
            makes the reconstruction term of [0, 1] pixels negligible next to the KL).
        epochs, batch_size, learning_rate: optimisation (Adam, early stopping).
        calibration_fraction: share of the normal images held out to calibrate.
        percentile: calibration percentile of the normal images' scores.
        pixel_percentile: percentile of normal pixels' map values that marks a pixel
            anomalous (per map kind).
        map_kinds: the maps whose pixel thresholds are calibrated.
        score_kind: the per-image score the threshold applies to.
        seed: training seed.
        device: ``auto``, ``cpu`` or ``cuda``.
    """

    model: str = "conv2d_vae"
    latent_dim: int = 32
    channels: tuple[int, ...] | None = None
    width: float = 1.0
    beta: float = 1.0
    learn_variance: bool = True
    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    calibration_fraction: float = 0.2
    percentile: float = 99.0
    pixel_percentile: float = 99.9
    map_kinds: tuple[MapKind, ...] = ("rec_error", "elbo_grad")
    score_kind: ScoreKind = "neg_elbo"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        if self.model not in IMAGE_MODELS:
            msg = f"image model must be one of {IMAGE_MODELS}, got {self.model!r}"
            raise ValueError(msg)
        model_spec(self.model)
        if not 0.0 < self.calibration_fraction < 1.0:
            msg = f"calibration_fraction must be in (0, 1), got {self.calibration_fraction}"
            raise ValueError(msg)
        for name in ("percentile", "pixel_percentile"):
            if not 0.0 < getattr(self, name) < 100.0:
                msg = f"{name} must be in (0, 100), got {getattr(self, name)}"
                raise ValueError(msg)
        unknown = sorted(set(self.map_kinds) - set(MAP_KINDS))
        if unknown:
            msg = f"unknown map kind(s) {unknown}; known: {list(MAP_KINDS)}"
            raise ValueError(msg)
        if self.score_kind not in SCORE_KINDS or self.score_kind in NEIGHBOUR_SCORE_KINDS:
            msg = f"an image model scores one of {SCORE_KINDS}, not {self.score_kind!r}"
            raise ValueError(msg)


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_cal = max(round(n * fraction), 1)
    return np.sort(order[n_cal:]), np.sort(order[:n_cal])


def train_images(
    images: F32,
    settings: ImageSettings,
    callbacks: list[TrainingCallback] | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> ModelBundle:
    """Train, calibrate (image scores and pixel thresholds) and assemble an image bundle.

    Args:
        images: ``(N, C, H, W)`` normal images, float32 in [0, 1].
        settings: model, training and calibration settings.
        callbacks: per-epoch training callbacks (e.g. MLflow logging).
        log: receives progress lines.

    Raises:
        DataError: too few images, or a size the architecture cannot take.
    """
    if images.ndim != 4 or len(images) < 10:
        msg = f"need at least 10 images shaped (N, C, H, W), got {images.shape}"
        raise DataError(msg)
    shape = ImageShape(*images.shape[1:])
    values: dict[str, object] = {
        "image_channels": shape.channels, "image_height": shape.height,
        "image_width": shape.width, "latent_dim": settings.latent_dim, "width": settings.width,
        "beta": settings.beta, "learn_variance": settings.learn_variance,
    }  # fmt: skip
    if settings.channels is not None:
        values["channels"] = settings.channels
    try:
        config = config_from_dict(settings.model, values)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    flat = images.reshape(len(images), -1)
    learn, cal = _split(len(flat), settings.calibration_fraction, settings.seed)
    model, result = fit(
        lambda: build_model(settings.model, config),
        flat[learn],
        TrainConfig(
            epochs=settings.epochs, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate, seed=settings.seed, device=settings.device,
            patience=10,
        ),
        callbacks,
    )  # fmt: skip
    if log is not None:
        log(f"trained {settings.model} on {len(learn)} images ({result.epochs_run} epochs)")
    bundle = ModelBundle(
        settings.model,
        asdict(config),
        {k: v.detach().cpu() for k, v in model.state_dict().items()},
        ImagePreprocess(shape),
        settings.score_kind,
        meta={"kind": "images", "train_images": len(learn), "calibration_images": len(cal),
              "best_epoch": result.best_epoch},
    )  # fmt: skip
    detector = ImageDetector(bundle, device="cpu")
    scores = detector.select(detector.score(flat[cal]))
    try:
        thresholds, _ = calibrate_set(
            scores,
            CalibrationSpec(percentile=settings.percentile),
            score_kind=settings.score_kind,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
    except ValueError as exc:  # e.g. too few calibration images for the percentile
        raise DataError(str(exc)) from exc
    maps = detector.maps(flat[cal], settings.map_kinds, proj_steps=20)
    pixel: dict[str, float] = {
        k: float(np.percentile(v, settings.pixel_percentile)) for k, v in maps.items()
    }
    return ModelBundle(
        bundle.model_key, bundle.model_config, bundle.state_dict, ImagePreprocess(shape, pixel),
        bundle.score_kind, thresholds, bundle.meta, bundle.is_samples,
    )  # fmt: skip


def train_and_register(
    images: F32,
    settings: ImageSettings,
    tracking: TrackingSettings,
    callbacks: list[TrainingCallback] | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train an image bundle, log it to MLflow (params, per-epoch metrics), register it.

    Raises:
        DataError: too few images, or a size the architecture cannot take.
    """
    params = {f"images.{k}": v for k, v in asdict(settings).items()}
    params |= {"images.n": len(images), "images.shape": images.shape[1:]}
    return train_logged(
        lambda cbs: train_images(images, settings, cbs, log=log), params, tracking, callbacks
    )
