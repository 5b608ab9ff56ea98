"""Per-batch handling of feature-vector messages: decode, validate, score, decide. No I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streamvae.bundle import Detector, Scored
from streamvae.data.schema import finite_rows
from streamvae.errors import PayloadDecodeError
from streamvae.scoring import top_contributions
from streamvae.service.feature_rows import FeatureReader, FeatureRows
from streamvae.service.outcome import (
    BatchOutcome,
    apply_verdict,
    field_text,
    message_key_text,
    record_bytes,
    record_key,
)
from streamvae.stream.codecs import encode_json
from streamvae.thresholds import (
    Admitted,
    AlertGate,
    Decisions,
    DriftMonitor,
    DriftSnapshot,
    HygienePolicy,
    ThresholdSet,
)
from streamvae.types import InboundMessage, ModelRef, OutboundMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineConfig:
    """Topics and limits of the feature-vector pipeline."""

    alert_topic: str
    dead_letter_topic: str
    score_topic: str | None = None
    max_message_bytes: int = 1_048_576
    max_records_per_message: int = 10_000
    top_features: int = 3
    drift_window: int = 5_000
    drift_min_count: int = 200
    hygiene: HygienePolicy = field(default_factory=HygienePolicy)


def drift_monitor(threshold: ThresholdSet, window: int, min_count: int) -> DriftMonitor:
    """Live scores against the default threshold's calibration scores and alert rate."""
    return DriftMonitor(
        threshold.reference.get("", np.zeros(0)),
        threshold.default.expected_alert_rate,
        window=window,
        min_count=min_count,
    )


@dataclass(frozen=True, slots=True)
class _Columns:
    """The output values of the rows that get a record, as Python lists.

    One ``tolist`` per column instead of a numpy scalar per field: with a score topic, a
    record is built for every row.
    """

    score: list[float]
    threshold: list[float]
    p_value: list[float | None]
    severity: list[str]
    recon: list[float]
    kl: list[float]
    segment: list[str | None] | None

    @classmethod
    def of(
        cls,
        positions: list[int],
        scored: Scored,
        score: npt.NDArray[np.float64],
        decided: Decisions,
        segments: list[str | None] | None,
    ) -> _Columns:
        """The columns at ``positions`` (indices into the scored rows)."""
        idx = np.asarray(positions, np.intp)
        return cls(
            score=score[idx].tolist(),
            threshold=decided.thresholds[idx].tolist(),
            p_value=[None if math.isnan(p) else p for p in decided.p_values[idx].tolist()],
            severity=[s or "normal" for s in decided.severities[idx].tolist()],
            recon=scored.scores.recon_nll[idx].tolist(),
            kl=scored.scores.kl[idx].tolist(),
            segment=None if segments is None else [segments[i] for i in positions],
        )


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


class FeaturePipeline:
    """Turns polled feature-vector messages into alerts, scores and dead letters."""

    def __init__(self, detector: Detector, model: ModelRef, config: PipelineConfig) -> None:
        self.config = config
        self.shadow: tuple[Detector, ModelRef] | None = None
        self.gate = AlertGate(config.hygiene)
        self.install(detector, model)

    def install(self, detector: Detector, model: ModelRef) -> None:
        """Score from the next batch on with ``detector`` (validated by the caller).

        Raises:
            NotCalibratedError: the detector's bundle has no threshold.
        """
        threshold = detector.threshold
        self.detector, self.model, self.threshold = detector, model, threshold
        self._schema = detector.preprocess.schema
        self._reader = FeatureReader(
            self._schema,
            detector.preprocess.context if detector.conditional else None,
            max_bytes=self.config.max_message_bytes,
            max_records=self.config.max_records_per_message,
            dead_letter_topic=self.config.dead_letter_topic,
        )
        self.drift = drift_monitor(threshold, self.config.drift_window, self.config.drift_min_count)

    def install_shadow(self, detector: Detector | None, model: ModelRef | None = None) -> None:
        """Also score every batch with ``detector``; count its would-be alerts, emit nothing.

        ``None`` stops shadow scoring. It must read the same features (``check_replacement``).
        """
        if detector is None or model is None:
            self.shadow = None
            return
        detector.threshold  # noqa: B018 - raises NotCalibratedError without one
        self.shadow = (detector, model)

    def drift_snapshot(self) -> DriftSnapshot:
        """Live scores against the calibration scores (see ``DriftMonitor``)."""
        return self.drift.snapshot()

    def checkpoint_messages(self) -> list[OutboundMessage]:
        """State to persist at a checkpoint: none (feature vectors are scored alone)."""
        return []

    def handle(self, messages: list[InboundMessage], now_ms: int) -> BatchOutcome:
        """Handle one poll's messages; never raises for bad input (it is dead-lettered)."""
        outcome = BatchOutcome()
        # a poll returns each partition's records in offset order: the last one wins
        outcome.offsets = {(m.topic, m.partition): m.offset + 1 for m in messages}
        rows = self._reader.read(messages, outcome)
        if rows:
            self._score(rows, outcome, now_ms)
        return outcome

    def _score(self, rows: FeatureRows, outcome: BatchOutcome, now_ms: int) -> None:
        n = len(rows)
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
            outcome.dead_letter(
                self.config.dead_letter_topic,
                message,
                index,
                record_bytes(message, rows.records[i]),
                exc,
            )
        keep = np.flatnonzero(finite)
        if keep.size == 0:
            return
        kept = keep.tolist()  # plain ints: indexing lists with numpy integers is slow
        scored = self.detector.score(matrix[keep], None if context is None else context[keep])
        score = self.detector.select(scored)
        segments = None
        if self.threshold.segment_field is not None:
            field_name = self.threshold.segment_field
            segments = [_segment_of(rows.records[i], rows.sources[i][0], field_name) for i in kept]
        decided = self.threshold.decide(score, segments)
        flagged = decided.severities != ""
        self.drift.update(score, flagged)
        outcome.records_scored += int(keep.size)
        if self.shadow is not None:
            self._shadow_score(matrix[keep], None if context is None else context[keep],
                               segments, outcome)  # fmt: skip
        outcome.score_ratios = np.divide(
            score, decided.thresholds, out=score.copy(), where=decided.thresholds > 0
        )
        ts = np.fromiter(rows.ts, np.int64, count=n)[keep]
        outcome.event_ts_ms = ts
        top_idx, top_share = top_contributions(
            scored.scores.per_feature[flagged], self.config.top_features
        )
        explained = dict(
            zip(np.flatnonzero(flagged).tolist(), zip(top_idx, top_share, strict=True), strict=True)
        )
        admitted = self._gate(rows, kept, ts, decided.severities) if self.gate.policy.active else {}
        # output records only where something is sent: every row with a score topic, else
        # only the alerts (the common case: about 1 % of rows)
        wanted = (
            list(range(keep.size)) if self.config.score_topic is not None else sorted(explained)
        )
        columns = _Columns.of(wanted, scored, score, decided, segments)
        shared = {
            "model": {"name": self.model.name, "version": self.model.version},
            "score_kind": self.detector.bundle.score_kind,
        }
        for j, pos in enumerate(wanted):
            row = kept[pos]
            record = self._record(rows, row, columns, j, now_ms, shared)
            emit = apply_verdict(record, admitted.get(pos), outcome)
            if self.config.score_topic is not None:
                outcome.outbound.append(self._out(self.config.score_topic, record, rows, row))
            if pos in explained and emit:
                idx, share = explained[pos]
                record["explanation"] = self._explain(matrix[row], scored.expected[pos], idx, share)
                outcome.alerts[record["severity"]] += 1
                outcome.outbound.append(self._out(self.config.alert_topic, record, rows, row))

    def _gate(
        self,
        rows: FeatureRows,
        kept: list[int],
        ts: npt.NDArray[np.int64],
        severities: npt.NDArray[np.str_],
    ) -> dict[int, Admitted]:
        """The alert gate's verdict per flagged position, by the record's key and event time."""
        positions = (
            range(len(kept))
            if self.gate.policy.needs_history
            else np.flatnonzero(severities != "").tolist()
        )
        verdicts: dict[int, Admitted] = {}
        for pos in positions:
            row = kept[pos]
            key = record_key(rows.records[row], rows.sources[row][0])
            verdict = self.gate.observe(key, int(ts[pos]), str(severities[pos]))
            if verdict is not None:
                verdicts[pos] = verdict
        return verdicts

    def _shadow_score(
        self,
        matrix: npt.NDArray[np.float32],
        context: npt.NDArray[np.float32] | None,
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

    @staticmethod
    def _record(
        rows: FeatureRows,
        row: int,
        columns: _Columns,
        j: int,
        now_ms: int,
        shared: dict[str, Any],
    ) -> dict[str, Any]:
        """The score record of input row ``row`` (entry ``j`` of ``columns``)."""
        message, index = rows.sources[row]
        record = rows.records[row]
        out = {
            "alert_id": f"{message.topic}:{message.partition}:{message.offset}:{index}",
            "id": field_text(record.get("id")),
            "key": record_key(record, message),
            "ts": rows.ts[row],
            "scored_at": now_ms,
            **shared,
            "score": columns.score[j],
            "threshold": columns.threshold[j],
            "p_value": columns.p_value[j],
            "severity": columns.severity[j],
            "components": {"recon": columns.recon[j], "kl": columns.kl[j]},
        }
        if columns.segment is not None:
            out["segment"] = columns.segment[j]
        return out

    def _explain(
        self,
        values: npt.NDArray[np.float32],
        expected: npt.NDArray[np.float32],
        top_idx: npt.NDArray[np.intp],
        top_share: npt.NDArray[np.float64],
    ) -> dict[str, Any]:
        names = self._schema.names
        return {
            "top_features": [
                {
                    "feature": names[i],
                    "value": float(values[i]),
                    "expected": float(expected[i]),
                    "contribution": round(float(share), 4),
                }
                for i, share in zip(top_idx, top_share, strict=True)
            ]
        }

    @staticmethod
    def _out(topic: str, payload: dict[str, Any], rows: FeatureRows, row: int) -> OutboundMessage:
        message, _ = rows.sources[row]
        key = payload["key"]
        return OutboundMessage(topic, encode_json(payload), key.encode() if key else message.key)
