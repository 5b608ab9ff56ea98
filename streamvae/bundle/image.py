"""Image bundles: the input shape, the pixel thresholds of the maps, and a detector.

An image model scores flat images ``(n, C*H*W)`` in [0, 1] (no scaler: pixel units), so the
per-image scores are the same as for feature vectors (negative ELBO, reconstruction error,
KL, NLL / bits per dimension). Its maps are judged against per-map pixel thresholds
calibrated on normal images: a pixel above its map's threshold is anomalous; the alert
reports the peak, the bounding box of those pixels and the share of the image they cover.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import torch

from streamvae.bundle.model import load_model, thresholds_in_force
from streamvae.data.images import ImageShape
from streamvae.errors import ModelLoadError, SchemaMismatchError
from streamvae.models import BaseVAE, importance_nll, latent_noise
from streamvae.scoring import ScoreSet, concat_score_sets, score_set
from streamvae.scoring.complexity import code_length_bits, complexity_corrected
from streamvae.scoring.fusion import ScoreFusion
from streamvae.scoring.maps import MAP_KINDS, MapKind, pixel_maps
from streamvae.thresholds import ThresholdSet
from streamvae.types import SAMPLED_SCORE_KINDS

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ImagePreprocess:
    """How images reach the model.

    Attributes:
        shape: ``(C, H, W)``.
        pixel_thresholds: per map kind, the pixel value above which a pixel is anomalous
            (a high percentile of the map over normal calibration images).
    """

    KIND: ClassVar[str] = "image"

    shape: ImageShape
    pixel_thresholds: Mapping[str, float] = field(default_factory=dict)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """``c{c}_y{y}_x{x}`` per pixel, in model order."""
        c, h, w = self.shape.as_tuple()
        return tuple(f"c{k}_y{y}_x{x}" for k in range(c) for y in range(h) for x in range(w))

    def input_change(self, old: ImagePreprocess) -> str | None:
        """How these images would be read differently from ``old``'s, or ``None``."""
        if old.shape != self.shape:
            return f"image shape changed: {old.shape.as_tuple()} -> {self.shape.as_tuple()}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        c, h, w = self.shape.as_tuple()
        return {
            "kind": self.KIND,
            "channels": c,
            "height": h,
            "width": w,
            "pixel_thresholds": dict(self.pixel_thresholds),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ImagePreprocess:
        """Inverse of :meth:`to_dict`."""
        if values.get("kind") != cls.KIND:
            msg = f"unsupported preprocessing kind {values.get('kind')!r}"
            raise ValueError(msg)
        shape = ImageShape(int(values["channels"]), int(values["height"]), int(values["width"]))
        thresholds = {str(k): float(v) for k, v in values.get("pixel_thresholds", {}).items()}
        unknown = set(thresholds) - set(MAP_KINDS)
        if unknown:
            msg = f"pixel thresholds for unknown map kinds {sorted(unknown)}"
            raise ValueError(msg)
        return cls(shape, thresholds)


@dataclass(frozen=True, slots=True)
class Region:
    """Where a map says an image is anomalous."""

    peak: tuple[int, int]
    peak_value: float
    bbox: tuple[int, int, int, int] | None  # (y0, x0, y1, x1) inclusive, None: no pixel over
    area_fraction: float


def region(anomaly_map: F32, pixel_threshold: float) -> Region:
    """Peak pixel, bounding box of the pixels over ``pixel_threshold`` and their share."""
    y, x = np.unravel_index(int(np.argmax(anomaly_map)), anomaly_map.shape)
    over = anomaly_map > pixel_threshold
    if not over.any():
        return Region((int(y), int(x)), float(anomaly_map[y, x]), None, 0.0)
    rows, cols = np.flatnonzero(over.any(axis=1)), np.flatnonzero(over.any(axis=0))
    bbox = (int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))
    return Region((int(y), int(x)), float(anomaly_map[y, x]), bbox, float(over.mean()))


class ImageDetector:
    """Scores flat images with an image bundle's model, deterministically (``z = mu``).

    A bundle with a neighbour index also gives each image its pixel distance to the
    nearest normal training image (``neighbour``) and the ``fused`` score: that distance
    and the negative ELBO or complexity-corrected likelihood, by calibrated surprises.
    """

    def __init__(self, bundle: Any, *, device: str = "cpu", chunk_size: int = 256) -> None:
        preprocess = bundle.preprocess
        if not isinstance(preprocess, ImagePreprocess):
            msg = "not an image bundle (its preprocessing is not 'image')"
            raise ModelLoadError(msg)
        self.bundle = bundle
        self.preprocess: ImagePreprocess = preprocess
        model, config = load_model(bundle.model_key, bundle.model_config, bundle.state_dict)
        if config.input_dim != preprocess.shape.pixels:
            msg = f"images of {preprocess.shape.pixels} pixels, model input {config.input_dim}"
            raise ModelLoadError(msg)
        self.device = torch.device(device)
        self.chunk_size = chunk_size
        self.model: BaseVAE = model.to(self.device).eval()
        self._noise = latent_noise(bundle.is_samples, self.model.latent_dim, 0, self.device)

    @property
    def threshold(self) -> ThresholdSet:
        """The image-score thresholds in force.

        Raises:
            NotCalibratedError: the bundle has none.
        """
        return thresholds_in_force(self.bundle.threshold)

    def probe(self) -> npt.NDArray[np.float64]:
        """The score of a uniformly grey image."""
        return self.select(self.score(np.full((1, self.preprocess.shape.pixels), 0.5, np.float32)))

    def score(self, images: F32, *, sampled: bool | None = None) -> ScoreSet:
        """Every per-image score of flat ``images (n, C*H*W)`` in [0, 1].

        Raises:
            SchemaMismatchError: images of another size.
        """
        pixels = self.preprocess.shape.pixels
        if images.ndim != 2 or images.shape[1] != pixels:
            msg = f"expected flat images of {pixels} pixels, got shape {images.shape}"
            raise SchemaMismatchError(msg)
        if sampled is None:
            sampled = self.bundle.score_kind in SAMPLED_SCORE_KINDS
        images = np.ascontiguousarray(images)  # a column-major batch rounds differently
        parts: list[ScoreSet] = []
        distances: list[npt.NDArray[np.float64]] = []
        fusion: ScoreFusion | None = self.bundle.fusion
        with torch.inference_mode():
            for start in range(0, max(len(images), 1), self.chunk_size):
                x = torch.as_tensor(images[start : start + self.chunk_size], device=self.device)
                out = self.model(x)
                nll = importance_nll(self.model, x, None, self._noise).nll if sampled else None
                parts.append(score_set(self.model.elbo_terms(x, out), nll))
                if fusion is not None:
                    distances.append(fusion.index.distances(x).double().cpu().numpy())
        scores = concat_score_sets(parts)
        if fusion is None:
            return scores
        corrected = None
        if fusion.complexity_tail is not None:
            bits = code_length_bits(images, self.preprocess.shape.as_tuple())
            corrected = complexity_corrected(scores.neg_elbo, bits)
        return fusion.complete(scores, np.concatenate(distances), corrected)

    def select(self, scores: ScoreSet) -> npt.NDArray[np.float64]:
        """The scores the threshold applies to (the bundle's score kind)."""
        return scores.select(self.bundle.score_kind)

    def maps(self, images: F32, kinds: Sequence[MapKind], **options: Any) -> dict[MapKind, F32]:
        """Pixel maps ``(n, H, W)`` of flat images (see :func:`pixel_maps`)."""
        return pixel_maps(
            self.model, images, self.preprocess.shape.as_tuple(), kinds, device=self.device,
            **options,
        )  # fmt: skip
