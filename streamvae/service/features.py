"""Feature vectors into the scoring pipeline: read, check, score; explain by top features.

A message holds one JSON record ``{"features": ...}`` (or an array of them, or the
feature names as top-level fields); :mod:`~streamvae.service.feature_rows` reads them,
fast for clean messages and exactly for the rest. A row with a NaN or out-of-range value
is dead-lettered alone. An alert explains itself by the features that contribute most to
the score, each with its observed and expected (reconstructed) value. A shadow model, when
installed, scores the same rows; its would-be alerts are counted, never sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from streamvae.bundle import Scored, TabularDetector
from streamvae.data.schema import FeatureSchema, finite_rows
from streamvae.errors import PayloadDecodeError
from streamvae.scoring import top_contributions
from streamvae.service.feature_rows import FeatureReader, FeatureRows
from streamvae.service.outcome import (
    BatchOutcome,
    field_text,
    message_key_text,
    record_bytes,
    record_key,
)
from streamvae.service.scoring import PipelineConfig, ScoringPipeline
from streamvae.thresholds import AlertGate, ThresholdSet
from streamvae.types import InboundMessage, ModelRef, OutboundMessage

F32 = npt.NDArray[np.float32]


def _segment_of(record: dict[str, Any], message: InboundMessage, field_name: str) -> str | None:
    """The record's segment: a top-level field, a ``context`` field, or the message key.

    A value of any JSON type is used as its text (``field_text``).
    """
    value = record.get(field_name)
    context = record.get("context")
    if value is None and isinstance(context, dict):
        value = context.get(field_name)
    text = field_text(value)
    return message_key_text(message) if text is None and field_name == "key" else text


@dataclass(slots=True)
class FeatureScored:
    """The scored rows of one poll (``kept``: their indices into ``rows``)."""

    rows: FeatureRows
    kept: list[int]
    matrix: F32
    scored: Scored
    score: npt.NDArray[np.float64]
    components: dict[str, npt.NDArray[np.float64]]
    segments: list[str | None] | None
    event_ts: npt.NDArray[np.int64]
    schema: FeatureSchema
    top_features: int

    def gate_key(self, row: int) -> str | None:
        """The record's ``key`` field as text, else the message key."""
        i = self.kept[row]
        return record_key(self.rows.records[i], self.rows.sources[i][0])

    def head(self, row: int) -> dict[str, Any]:
        """``alert_id``, ``id``, ``key``, ``ts`` of scored row ``row``."""
        i = self.kept[row]
        message, index = self.rows.sources[i]
        record = self.rows.records[i]
        return {
            "alert_id": f"{message.topic}:{message.partition}:{message.offset}:{index}",
            "id": field_text(record.get("id")),
            "key": record_key(record, message),
            "ts": self.rows.ts[i],
        }

    def out_key(self, row: int, record: dict[str, Any]) -> bytes | None:
        """The record's key, else the message's."""
        key = record["key"]
        return key.encode() if key else self.rows.sources[self.kept[row]][0].key

    def explain(self, rows: list[int], outcome: BatchOutcome) -> list[dict[str, Any] | None]:
        """The top features of each row: value, expected value, share of the score."""
        del outcome
        if not rows:
            return []
        idx = np.asarray(rows, np.intp)
        top, shares = top_contributions(self.scored.scores.per_feature[idx], self.top_features)
        # one conversion per column, not a numpy scalar per field
        values = np.take_along_axis(self.matrix[[self.kept[r] for r in rows]], top, axis=1)
        expected = np.take_along_axis(self.scored.expected[idx], top, axis=1)
        names = self.schema.names
        lists = (top.tolist(), shares.tolist(), values.tolist(), expected.tolist())
        columns = zip(*lists, strict=True)
        return [
            {
                "top_features": [
                    {"feature": names[i], "value": v, "expected": e, "contribution": round(c, 4)}
                    for i, c, v, e in zip(*row, strict=True)
                ]
            }
            for row in columns
        ]


class FeatureInput:
    """The feature-vector part of the scoring pipeline (with optional shadow scoring)."""

    payload: Literal["records", "npy"] = "records"

    def __init__(self, config: PipelineConfig, *, top_features: int = 3) -> None:
        self.config = config
        self.top_features = top_features
        self.gate = AlertGate(config.hygiene)
        self.shadow: tuple[TabularDetector, ModelRef] | None = None

    def install(self, detector: TabularDetector, model: ModelRef) -> ThresholdSet:
        """Read and score with ``detector`` from the next batch on; returns its thresholds."""
        del model  # named in the records by the pipeline
        threshold = detector.threshold
        self.detector, self.threshold = detector, threshold
        self.schema = detector.preprocess.schema
        self.reader = FeatureReader(
            self.schema,
            detector.preprocess.context if detector.conditional else None,
            max_bytes=self.config.max_message_bytes,
            max_records=self.config.max_records_per_message,
            dead_letter_topic=self.config.dead_letter_topic,
        )
        return threshold

    def install_shadow(
        self, detector: TabularDetector | None, model: ModelRef | None = None
    ) -> None:
        """Also score every batch with ``detector``; count its would-be alerts, emit nothing.

        ``None`` stops shadow scoring. It must read the same features (``check_replacement``).
        """
        if detector is None or model is None:
            self.shadow = None
            return
        detector.threshold  # noqa: B018 - raises NotCalibratedError without one
        self.shadow = (detector, model)

    def collect(
        self, messages: list[InboundMessage], outcome: BatchOutcome, now_ms: int
    ) -> FeatureScored | None:
        """Read the poll's rows, dead-letter the non-finite ones, score the rest."""
        del now_ms
        rows = self.reader.read(messages, outcome)
        if not rows:
            return None
        with np.errstate(over="ignore"):  # values beyond float32 become inf: caught below
            matrix = rows.features().astype(np.float32)
            context = (
                np.array(rows.contexts, np.float64).astype(np.float32) if rows.contexts else None
            )
        finite = finite_rows(matrix)
        if context is not None:
            finite &= finite_rows(context)
        for i in np.flatnonzero(~finite):
            message, index = rows.sources[i]
            exc = PayloadDecodeError(
                reason="non_finite",
                detail="a feature or context value is NaN or out of float32 range",
            )
            value = record_bytes(message, rows.records[i])
            outcome.dead_letter(self.config.dead_letter_topic, message, index, value, exc)
        keep = np.flatnonzero(finite)
        if keep.size == 0:
            return None
        kept = keep.tolist()  # plain ints: indexing lists with numpy integers is slow
        kept_context = None if context is None else context[keep]
        scored = self.detector.score(matrix[keep], kept_context)
        segments = None
        field_name = self.threshold.segment_field
        if field_name is not None:
            segments = [_segment_of(rows.records[i], rows.sources[i][0], field_name) for i in kept]
        if self.shadow is not None:
            self._shadow_score(matrix[keep], kept_context, segments, outcome)
        return FeatureScored(
            rows=rows, kept=kept, matrix=matrix, scored=scored,
            score=self.detector.select(scored),
            components={"recon": scored.scores.recon_nll, "kl": scored.scores.kl},
            segments=segments, event_ts=np.fromiter(rows.ts, np.int64, count=len(rows))[keep],
            schema=self.schema, top_features=self.top_features,
        )  # fmt: skip

    def _shadow_score(
        self,
        matrix: F32,
        context: F32 | None,
        segments: list[str | None] | None,
        outcome: BatchOutcome,
    ) -> None:
        """The shadow model's would-be alerts on the same rows (counted, never sent)."""
        assert self.shadow is not None
        detector, _ = self.shadow
        threshold = detector.threshold
        decided = threshold.decide(
            detector.select(detector.score(matrix, context)),
            segments if threshold.segment_field == self.threshold.segment_field else None,
        )
        outcome.shadow_scored += int(matrix.shape[0])
        outcome.shadow_alerts.update(str(s) for s in decided.severities[decided.severities != ""])

    def finish(self, outcome: BatchOutcome, now_ms: int) -> None:
        """Nothing to keep: feature vectors are scored alone."""

    def checkpoint_messages(self) -> list[OutboundMessage]:
        """No state to persist."""
        return []


def feature_pipeline(
    detector: TabularDetector, model: ModelRef, config: PipelineConfig, *, top_features: int = 3
) -> ScoringPipeline:
    """The scoring pipeline of a feature-vector model."""
    return ScoringPipeline(FeatureInput(config, top_features=top_features), detector, model, config)
