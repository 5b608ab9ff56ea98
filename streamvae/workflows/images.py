"""Train, calibrate and register image models (convolutional VAEs on normal images)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from streamvae.bundle import ModelBundle
from streamvae.bundle.fusion import MIN_REFERENCE_ROWS, with_image_fusion
from streamvae.bundle.image import ImageDetector, ImagePreprocess
from streamvae.config import TrackingSettings, unknown_model_message
from streamvae.data.images import F32, ImageShape, LabelledImages
from streamvae.errors import DataError
from streamvae.models import config_from_dict, with_params
from streamvae.scoring import DetectionReport, detection_report
from streamvae.scoring.maps import MAP_KINDS, MapKind, pixel_auroc
from streamvae.thresholds import CalibrationSpec, ThresholdSet, calibrate_set
from streamvae.tracking import Trained, TrainOutcome, train_in_run
from streamvae.training import TrainConfig, TrainingCallback
from streamvae.types import IMAGE_MODELS, NEIGHBOUR_SCORE_KINDS, SCORE_KINDS, ScoreKind
from streamvae.workflows.fitting import fit_bundle

AUTO_EPOCHS = 50
"""The epoch limit of the automatic budget on a large set of images."""
MIN_STEPS = 1500
"""Optimiser steps the automatic budget reaches on a small set (raising the epochs)."""
PATIENCE_STEPS = 400
"""Early-stopping patience of the automatic budget, in optimiser steps at least."""


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
        epochs: the epoch limit; ``None`` (the default) is the automatic budget: 50
            epochs, raised on a small set to reach ``MIN_STEPS`` optimiser steps (a few
            hundred images need hundreds of epochs), with early-stopping patience of at
            least ``PATIENCE_STEPS`` steps. A number is that limit exactly.
        batch_size, learning_rate: optimisation (Adam, early stopping).
        calibration_fraction: share of the normal images held out to calibrate.
        percentile: calibration percentile of the normal images' scores.
        pixel_percentile: percentile of normal pixels' map values that marks a pixel
            anomalous (per map kind).
        map_kinds: the maps whose pixel thresholds are calibrated.
        score_kind: the per-image score the threshold applies to. ``fused`` (the default)
            adds the image's pixel distance to its ``neighbours``-th nearest normal
            training image to the negative ELBO or the complexity-corrected likelihood,
            whichever is more surprising, all as calibrated surprises (see
            :mod:`streamvae.scoring.fusion`); the index keeps at most
            ``neighbour_images`` images and 64 MiB.
        neighbours: k of the neighbour distance (1 = the nearest normal image).
        neighbour_images: the most training images the neighbour index keeps.
        seed: training seed.
        device: ``auto``, ``cpu`` or ``cuda``.
        params: the family's own hyper-parameters (``ModelSpec.params``, e.g. ``head``).
    """

    model: str = "conv2d_vae"
    latent_dim: int = 32
    channels: tuple[int, ...] | None = None
    width: float = 1.0
    beta: float = 1.0
    learn_variance: bool = True
    epochs: int | None = None
    batch_size: int = 64
    learning_rate: float = 1e-3
    calibration_fraction: float = 0.2
    percentile: float = 99.0
    pixel_percentile: float = 99.9
    map_kinds: tuple[MapKind, ...] = ("rec_error", "elbo_grad")
    score_kind: ScoreKind = "fused"
    neighbours: int = 1
    neighbour_images: int = 2048
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in IMAGE_MODELS:
            raise ValueError(unknown_model_message(self.model, "image", IMAGE_MODELS))
        model_values(self, ImageShape(1, 8, 8))  # a param the family does not take
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
        if self.score_kind not in SCORE_KINDS:
            msg = f"an image model scores one of {SCORE_KINDS}, not {self.score_kind!r}"
            raise ValueError(msg)
        if self.epochs is not None and self.epochs < 1:
            msg = f"epochs must be at least 1, got {self.epochs}"
            raise ValueError(msg)
        if self.neighbours < 1 or self.neighbour_images < self.neighbours:
            msg = (
                f"neighbours ({self.neighbours}) must be at least 1 and at most "
                f"neighbour_images ({self.neighbour_images})"
            )
            raise ValueError(msg)

    def train_config(self) -> TrainConfig:
        """The core training config (the automatic budget when ``epochs`` is unset)."""
        auto = self.epochs is None
        return TrainConfig(
            epochs=AUTO_EPOCHS if self.epochs is None else self.epochs,
            batch_size=self.batch_size, learning_rate=self.learning_rate, seed=self.seed,
            device=self.device, patience=10, min_steps=MIN_STEPS if auto else 0,
            patience_steps=PATIENCE_STEPS if auto else 0,
        )  # fmt: skip


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_cal = max(round(n * fraction), 1)
    return np.sort(order[n_cal:]), np.sort(order[:n_cal])


def model_values(settings: ImageSettings, shape: ImageShape) -> dict[str, Any]:
    """The image model's config values: the image shape, the settings, the family's params.

    Raises:
        ValueError: a param the family does not take, or one with a setting of its own.
    """
    values: dict[str, Any] = {
        "image_channels": shape.channels, "image_height": shape.height,
        "image_width": shape.width, "latent_dim": settings.latent_dim, "width": settings.width,
        "beta": settings.beta, "learn_variance": settings.learn_variance,
    }  # fmt: skip
    if settings.channels is not None:
        values["channels"] = settings.channels
    return with_params(settings.model, values, settings.params)


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
    try:
        config = config_from_dict(settings.model, model_values(settings, shape))
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    flat = images.reshape(len(images), -1)
    learn, cal = _split(len(flat), settings.calibration_fraction, settings.seed)
    neighbour_kind = settings.score_kind in NEIGHBOUR_SCORE_KINDS
    train_config = settings.train_config()
    n_reference = math.floor(len(learn) * train_config.val_fraction)
    if neighbour_kind and n_reference < MIN_REFERENCE_ROWS:
        msg = (
            f"the {settings.score_kind} score fits its parts on at least {MIN_REFERENCE_ROWS} "
            f"early-stopping images; {len(flat)} images leave {n_reference}: train on more "
            "images, or score neg_elbo"
        )
        raise DataError(msg)
    bundle, result = fit_bundle(
        settings.model, config, flat[learn], train_config, ImagePreprocess(shape),
        "neg_elbo" if neighbour_kind else settings.score_kind,  # fused: once indexed below
        callbacks=callbacks,
        meta={"kind": "images", "train_images": len(learn), "calibration_images": len(cal)},
    )  # fmt: skip
    if log is not None:
        log(f"trained {settings.model} on {len(learn)} images ({result.epochs_run} epochs)")
    if neighbour_kind:
        # three disjoint roles, as for feature vectors: the index holds the images trained
        # on, the tails are fitted on the early-stopping images (never trained on, not in
        # the index), the threshold on the calibration images (neither), so a calibration
        # image's fused score is distributed as a new normal image's
        trained = np.ones(len(learn), dtype=bool)
        trained[result.val_rows] = False
        bundle = with_image_fusion(
            bundle, flat[learn][trained], flat[learn][result.val_rows],
            score_kind=settings.score_kind,
            k=settings.neighbours, max_images=settings.neighbour_images, seed=settings.seed,
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
    return replace(bundle, preprocess=ImagePreprocess(shape, pixel), threshold=thresholds)


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

    def trained(cbs: list[TrainingCallback]) -> Trained:
        bundle = train_images(images, settings, cbs, log=log)
        meta = bundle.meta
        return Trained(bundle, int(meta["train_images"]), int(meta["calibration_images"]))

    return train_in_run(trained, params, tracking, callbacks)


@dataclass(frozen=True, slots=True)
class PixelReport:
    """How well an image model's map finds the anomalous pixels of masked images.

    Attributes:
        map_kind: the map judged (the one the service attaches to alerts by default).
        pixel_auroc: AUROC of every pixel's map value against the masks.
        anomalous_pixels: pixels the masks mark.
        pixel_threshold: the bundle's calibrated threshold for that map, if any.
        pixel_precision: share of the pixels over the threshold that the masks mark.
        pixel_recall: share of the marked pixels over the threshold.
    """

    map_kind: MapKind
    pixel_auroc: float
    anomalous_pixels: int
    pixel_threshold: float | None
    pixel_precision: float
    pixel_recall: float

    def to_dict(self) -> dict[str, object]:
        """Plain values."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ImageEvaluation:
    """Detection quality of an image model on labelled images."""

    thresholds: ThresholdSet
    report: DetectionReport
    localisation: PixelReport | None


def evaluate_images(
    bundle: ModelBundle,
    labelled: LabelledImages,
    *,
    map_kind: MapKind = "rec_error",
    device: str = "cpu",
) -> ImageEvaluation:
    """Image-level AUROC, AP and precision/recall at the threshold; pixel AUROC with masks.

    Raises:
        DataError: images of another size than the model's, or a single class.
        NotCalibratedError: the bundle has no threshold.
    """
    detector = ImageDetector(bundle, device=device)
    expected = detector.preprocess.shape.as_tuple()
    got = tuple(labelled.images.shape[1:])
    if got != expected:
        msg = f"images are {_shape(got)} (CxHxW), the model takes {_shape(expected)}"
        raise DataError(msg)
    n_anomalous = int(labelled.labels.sum())
    if n_anomalous in (0, len(labelled.labels)):
        msg = f"need normal and anomalous images, got {n_anomalous} of {len(labelled.labels)}"
        raise DataError(msg)
    thresholds = detector.threshold
    flat = labelled.images.reshape(len(labelled.images), -1)
    scores = detector.select(detector.score(flat))
    report = detection_report(labelled.labels, scores, thresholds.default.value)
    localisation = None
    if labelled.masks is not None:
        maps = detector.maps(flat, (map_kind,))[map_kind]
        localisation = _pixel_report(
            map_kind, maps, labelled.masks, detector.preprocess.pixel_thresholds.get(map_kind)
        )
    return ImageEvaluation(thresholds, report, localisation)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def _pixel_report(
    kind: MapKind, maps: F32, masks: npt.NDArray[np.bool_], threshold: float | None
) -> PixelReport:
    marked = int(masks.sum())
    precision = recall = float("nan")
    if threshold is not None:
        over = maps > threshold
        hits = int(np.sum(over & masks))
        precision = hits / int(over.sum()) if over.any() else float("nan")
        recall = hits / marked if marked else float("nan")
    return PixelReport(kind, pixel_auroc(maps, masks), marked, threshold, precision, recall)
