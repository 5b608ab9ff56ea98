"""Per-batch handling of image messages: decode ``.npy`` batches, check, score, map, decide.

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

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from streamvae.bundle.image import ImageDetector, region
from streamvae.data.images import ImageShape, decode_image_batch, encode_npy
from streamvae.errors import PayloadDecodeError
from streamvae.service.map_store import MapStore
from streamvae.service.outcome import BatchOutcome, apply_verdict, field_text, message_key_text
from streamvae.service.pipeline import drift_monitor
from streamvae.stream.codecs import encode_json
from streamvae.thresholds import AlertGate, DriftSnapshot, HygienePolicy
from streamvae.types import InboundMessage, ModelRef, OutboundMessage

MapMode = Literal["off", "rec_error", "elbo_grad", "rec_grad", "kl_grad", "combi"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ImagePipelineConfig:
    """Topics, limits and the map used to explain alerts.

    ``maps``: ``off`` (scores only), ``rec_error`` (a forward pass) or a gradient map (a
    backward pass per alerting batch). ``map_dir``: save each alert's full map there, keeping
    the newest ``map_max_files``.
    """

    alert_topic: str
    dead_letter_topic: str
    score_topic: str | None = None
    max_message_bytes: int = 16_777_216
    max_images_per_message: int = 1_024
    maps: MapMode = "rec_error"
    map_dir: str | None = None
    map_max_files: int = 10_000
    drift_window: int = 5_000
    drift_min_count: int = 200
    hygiene: HygienePolicy = field(default_factory=HygienePolicy)


@dataclass(frozen=True, slots=True)
class _Image:
    message: InboundMessage
    index: int
    image_id: str | None


class ImagePipeline:
    """Turns polled image batches into per-image alerts, scores and dead letters."""

    def __init__(
        self, detector: ImageDetector, model: ModelRef, config: ImagePipelineConfig
    ) -> None:
        self.config = config
        self.gate = AlertGate(config.hygiene)
        self.shape: ImageShape = detector.preprocess.shape
        self.map_store = (
            None if config.map_dir is None else MapStore(config.map_dir, config.map_max_files)
        )
        self.install(detector, model)

    def install(self, detector: ImageDetector, model: ModelRef) -> None:
        """Score from the next batch on with ``detector`` (same image shape)."""
        if detector.preprocess.shape != self.shape:
            msg = f"image shape {detector.preprocess.shape} differs from {self.shape}"
            raise ValueError(msg)
        self.detector, self.model, self.threshold = detector, model, detector.threshold
        self.drift = drift_monitor(
            self.threshold, self.config.drift_window, self.config.drift_min_count
        )

    def drift_snapshot(self) -> DriftSnapshot:
        """Live scores against the calibration scores."""
        return self.drift.snapshot()

    def checkpoint_messages(self) -> list[OutboundMessage]:
        """No state to persist: images are scored alone."""
        return []

    def handle(self, messages: list[InboundMessage], now_ms: int) -> BatchOutcome:
        """Handle one poll's messages; never raises for bad input (it is dead-lettered)."""
        outcome = BatchOutcome()
        arrays: list[np.ndarray] = []
        sources: list[_Image] = []
        for message in messages:
            outcome.offsets[(message.topic, message.partition)] = message.offset + 1
            self._collect(message, outcome, arrays, sources)
        if arrays:
            self._score(np.concatenate(arrays), sources, outcome, now_ms)
        return outcome

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
                max_images=self.config.max_images_per_message,
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

    def _score(
        self, images: np.ndarray, sources: list[_Image], outcome: BatchOutcome, now_ms: int
    ) -> None:
        scores = self.detector.score(images)
        score = self.detector.select(scores)
        decided = self.threshold.decide(score)
        flagged = decided.severities != ""
        self.drift.update(score, flagged)
        outcome.records_scored += len(sources)
        outcome.score_ratios = np.divide(
            score, decided.thresholds, out=score.copy(), where=decided.thresholds > 0
        )
        outcome.event_ts_ms = np.array([s.message.timestamp_ms or 0 for s in sources], np.int64)
        alerting = np.flatnonzero(flagged)
        maps = self._maps(images[alerting]) if alerting.size else None
        map_of = {int(pos): i for i, pos in enumerate(alerting)}
        for pos, source in enumerate(sources):
            if not flagged[pos] and self.config.score_topic is None:
                continue
            record = self._record(source, scores, score, decided, pos, now_ms)
            verdict = (
                self.gate.observe(
                    message_key_text(source.message), now_ms, str(decided.severities[pos])
                )
                if self.gate.policy.active
                else None
            )
            emit = apply_verdict(record, verdict, outcome)
            if self.config.score_topic is not None:
                outcome.outbound.append(self._out(self.config.score_topic, record, source))
            if flagged[pos] and emit:
                if maps is not None:
                    record["explanation"] = self._explain(maps[map_of[pos]], source, outcome)
                outcome.alerts[record["severity"]] += 1
                outcome.outbound.append(self._out(self.config.alert_topic, record, source))

    def _maps(self, images: np.ndarray) -> np.ndarray | None:
        kind = self.config.maps
        if kind == "off":
            return None
        return self.detector.maps(images, (kind,))[kind]

    def _explain(
        self, anomaly_map: np.ndarray, source: _Image, outcome: BatchOutcome
    ) -> dict[str, Any]:
        kind = self.config.maps
        pixel_threshold = self.detector.preprocess.pixel_thresholds.get(kind, math.inf)
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
            path = store.save(f"{_source_id(source).replace(':', '_')}.{kind}.npy", anomaly_map)
            if path is None:
                outcome.errors["map_write"] += 1
            else:
                explanation["map_path"] = path
        return explanation

    def _record(
        self,
        source: _Image,
        scores: Any,
        score: np.ndarray,
        decided: Any,
        pos: int,
        now_ms: int,
    ) -> dict[str, Any]:
        p_value = float(decided.p_values[pos])
        return {
            "alert_id": _source_id(source),
            "id": source.image_id,
            "key": source.image_id,
            "ts": source.message.timestamp_ms,
            "scored_at": now_ms,
            "model": {"name": self.model.name, "version": self.model.version},
            "score_kind": self.detector.bundle.score_kind,
            "score": float(score[pos]),
            "threshold": float(decided.thresholds[pos]),
            "p_value": None if math.isnan(p_value) else p_value,
            "severity": str(decided.severities[pos]) or "normal",
            "components": {"recon": float(scores.recon_nll[pos]), "kl": float(scores.kl[pos])},
        }

    @staticmethod
    def _out(topic: str, payload: dict[str, Any], source: _Image) -> OutboundMessage:
        key = source.image_id.encode() if source.image_id else source.message.key
        return OutboundMessage(topic, encode_json(payload), key)


def _source_id(source: _Image) -> str:
    m = source.message
    return f"{m.topic}:{m.partition}:{m.offset}:{source.index}"


def _one_image(value: bytes, index: int) -> bytes:
    """Image ``index`` of a sound ``.npy`` batch, as its own ``.npy`` (for a dead letter)."""
    import io

    array = np.load(io.BytesIO(value), allow_pickle=False)
    return encode_npy(array[index : index + 1])
