"""Images into the scoring pipeline: decode ``.npy`` batches, check, score; explain by maps.

A message value is one ``.npy`` array of images, ``(N, C, H, W)`` or ``(N, H, W)``, uint8 or
float32 in [0, 1], with headers ``content-type: application/x-npy`` and ``ids`` (a JSON list
of N ids). A message that is not such an array goes to the dead-letter topic whole; an image
with NaN or out-of-range pixels goes there alone (as a one-image ``.npy``), and its batch
neighbours are scored. Every image counts as one record.

Alerts carry the image score and threshold and, when maps are on, an explanation from the
configured map: the peak pixel, the bounding box of the pixels over the map's calibrated
pixel threshold and the share of the image they cover; optionally the full map is saved as
``.npy`` under ``map_dir`` and its path is in the alert. Maps are computed for alerting
images only, in one batch: ``rec_error`` costs a forward pass, gradient maps a backward pass.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from streamvae.bundle.image import ImageDetector, region
from streamvae.data.images import ImageShape, decode_image_batch, encode_npy
from streamvae.errors import PayloadDecodeError
from streamvae.scoring import ScoreSet
from streamvae.service.map_store import MapStore
from streamvae.service.outcome import BatchOutcome, field_text, message_key_text
from streamvae.service.scoring import PipelineConfig, ScoringPipeline
from streamvae.thresholds import AlertGate, ThresholdSet
from streamvae.types import InboundMessage, ModelRef, OutboundMessage

MapMode = Literal["off", "rec_error", "elbo_grad", "rec_grad", "kl_grad", "combi"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageMaps:
    """The map that explains image alerts, and where full maps are kept.

    ``maps``: ``off`` (scores only), ``rec_error`` (a forward pass) or a gradient map (a
    backward pass per alerting batch). ``map_dir``: save each alert's full map there, keeping
    the newest ``map_max_files``.
    """

    maps: MapMode = "rec_error"
    map_dir: str | None = None
    map_max_files: int = 10_000


@dataclass(frozen=True, slots=True)
class _Image:
    message: InboundMessage
    index: int
    image_id: str | None

    @property
    def source_id(self) -> str:
        m = self.message
        return f"{m.topic}:{m.partition}:{m.offset}:{self.index}"


@dataclass(slots=True)
class ImageScored:
    """The scored images of one poll, row-aligned."""

    images: npt.NDArray[np.float32]
    sources: list[_Image]
    score: npt.NDArray[np.float64]
    components: dict[str, npt.NDArray[np.float64]]
    event_ts: npt.NDArray[np.int64]
    input: ImageInput
    segments: list[str | None] | None = None

    def gate_key(self, row: int) -> str | None:
        """The message key (e.g. the camera): alerts are gated per source."""
        return message_key_text(self.sources[row].message)

    def head(self, row: int) -> dict[str, Any]:
        """``alert_id``, ``id`` and ``key`` (the image id), ``ts`` (the message's)."""
        source = self.sources[row]
        return {
            "alert_id": source.source_id,
            "id": source.image_id,
            "key": source.image_id,
            "ts": source.message.timestamp_ms,
        }

    def out_key(self, row: int, record: dict[str, Any]) -> bytes | None:
        """The image id, else the message key."""
        del record
        source = self.sources[row]
        return source.image_id.encode() if source.image_id else source.message.key

    def explain(self, rows: list[int], outcome: BatchOutcome) -> list[dict[str, Any] | None]:
        """Each alerting image's map region (one batch); ``None`` with maps off."""
        return self.input.explain(self.images[rows], [self.sources[r] for r in rows], outcome)


class ImageInput:
    """The image part of the scoring pipeline."""

    payload: Literal["records", "npy"] = "npy"

    def __init__(
        self, detector: ImageDetector, config: PipelineConfig, maps: ImageMaps = ImageMaps()
    ) -> None:
        self.config = config
        self.maps = maps
        self.gate = AlertGate(config.hygiene)
        self.shape: ImageShape = detector.preprocess.shape
        self.detector = detector
        self.map_store = (
            None if maps.map_dir is None else MapStore(maps.map_dir, maps.map_max_files)
        )

    def install(self, detector: ImageDetector, model: ModelRef) -> ThresholdSet:
        """Score from the next batch on with ``detector`` (same image shape)."""
        del model  # named in the records by the pipeline
        if detector.preprocess.shape != self.shape:
            msg = f"image shape {detector.preprocess.shape} differs from {self.shape}"
            raise ValueError(msg)
        threshold = detector.threshold
        self.detector = detector
        return threshold

    def collect(
        self, messages: list[InboundMessage], outcome: BatchOutcome, now_ms: int
    ) -> ImageScored | None:
        """Decode the poll's batches (dead-lettering bad ones and bad images), score the rest."""
        del now_ms
        arrays: list[np.ndarray] = []
        sources: list[_Image] = []
        for message in messages:
            self._collect(message, outcome, arrays, sources)
        if not arrays:
            return None
        images = np.concatenate(arrays)
        scores: ScoreSet = self.detector.score(images)
        return ImageScored(
            images, sources, self.detector.select(scores),
            {"recon": scores.recon_nll, "kl": scores.kl},
            np.array([s.message.timestamp_ms or 0 for s in sources], np.int64), self,
        )  # fmt: skip

    def _collect(
        self,
        message: InboundMessage,
        outcome: BatchOutcome,
        arrays: list[np.ndarray],
        sources: list[_Image],
    ) -> None:
        dead = self.config.dead_letter_topic
        headers = {k: v for k, v in message.headers if isinstance(v, bytes)}
        try:
            batch = decode_image_batch(
                message.value, headers, self.shape,
                max_bytes=self.config.max_message_bytes,
                max_images=self.config.max_records_per_message,
            )  # fmt: skip
        except PayloadDecodeError as exc:
            outcome.reject(dead, message, exc)
            return
        outcome.records_consumed += batch.count
        for index, problem in sorted(batch.rejected.items()):
            one = _one_image(message.value or b"", index)
            outcome.dead_letter(dead, message, index, one, problem)
        arrays.append(batch.images)
        sources.extend(_Image(message, i, field_text(batch.ids[i])) for i in batch.index)

    def explain(
        self, images: npt.NDArray[np.float32], sources: list[_Image], outcome: BatchOutcome
    ) -> list[dict[str, Any] | None]:
        """The configured map's region of each image: peak, bounding box, area, saved map."""
        kind = self.maps.maps
        if kind == "off" or not sources:
            return [None for _ in sources]
        maps = self.detector.maps(images, (kind,))[kind]
        pixel_threshold = self.detector.preprocess.pixel_thresholds.get(kind, math.inf)
        out: list[dict[str, Any] | None] = []
        for anomaly_map, source in zip(maps, sources, strict=True):
            where = region(anomaly_map, pixel_threshold)
            explanation: dict[str, Any] = {
                "map": kind,
                "peak": {"y": where.peak[0], "x": where.peak[1], "value": where.peak_value},
                "bbox": None
                if where.bbox is None
                else dict(zip(("y0", "x0", "y1", "x1"), where.bbox, strict=True)),
                "area_fraction": where.area_fraction,
                "pixel_threshold": None if math.isinf(pixel_threshold) else pixel_threshold,
            }
            store = self.map_store
            if store is not None and not store.disabled:
                name = f"{source.source_id.replace(':', '_')}.{kind}.npy"
                path = store.save(name, anomaly_map)
                if path is None:
                    outcome.errors["map_write"] += 1
                else:
                    explanation["map_path"] = path
            out.append(explanation)
        return out

    def finish(self, outcome: BatchOutcome, now_ms: int) -> None:
        """Nothing to keep: images are scored alone."""

    def checkpoint_messages(self) -> list[OutboundMessage]:
        """No state to persist."""
        return []


def image_pipeline(
    detector: ImageDetector, model: ModelRef, config: PipelineConfig, maps: ImageMaps = ImageMaps()
) -> ScoringPipeline:
    """The scoring pipeline of an image model."""
    return ScoringPipeline(ImageInput(detector, config, maps), detector, model, config)


def _one_image(value: bytes, index: int) -> bytes:
    """Image ``index`` of a sound ``.npy`` batch, as its own ``.npy`` (for a dead letter)."""
    array = np.load(io.BytesIO(value), allow_pickle=False)
    return encode_npy(array[index : index + 1])
