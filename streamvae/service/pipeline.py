"""Per-batch handling of feature-vector messages: decode, validate, score, decide. No I/O."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from streamvae.bundle import Detector, Scored
from streamvae.data.schema import finite_rows
from streamvae.errors import PayloadDecodeError
from streamvae.scoring import top_contributions
from streamvae.stream.codecs import decode_json, encode_json, split_records
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


@dataclass(slots=True)
class BatchOutcome:
    """What one batch produced; the runner sends ``outbound``, then commits ``offsets``.

    ``records_consumed == records_scored + sum(dead_letters.values()) +
    sum(unscored.values())`` always holds (``unscored``: KPI points whose series is warming
    up, whose window is too sparse, or that were absorbed before a restart).
    """

    outbound: list[OutboundMessage] = field(default_factory=list)
    records_consumed: int = 0
    records_scored: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    event_ts_ms: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    score_ratios: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    unscored: Counter[str] = field(default_factory=Counter)
    series_live: int | None = None
    state_bytes: int | None = None
    shadow_scored: int = 0
    shadow_alerts: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)  # flagged, no alert: why

    def dead_letter(
        self,
        topic: str,
        message: InboundMessage,
        index: int,
        value: bytes,
        exc: PayloadDecodeError,
    ) -> None:
        """Send ``value`` (element ``index`` of ``message``, -1: all of it) to ``topic``.

        Headers: ``error`` (reason code), ``detail``, ``source``
        (``topic:partition:offset:index``), then the input's own headers.
        """
        headers = (
            ("error", exc.reason.encode()),
            ("detail", exc.detail[:500].encode()),
            ("source", f"{message.topic}:{message.partition}:{message.offset}:{index}".encode()),
            *message.headers,
        )
        self.outbound.append(OutboundMessage(topic, value, message.key, headers))
        self.dead_letters[exc.reason] += 1


def drift_monitor(threshold: ThresholdSet, window: int, min_count: int) -> DriftMonitor:
    """Live scores against the default threshold's calibration scores and alert rate."""
    return DriftMonitor(
        threshold.reference.get("", np.zeros(0)),
        threshold.default.expected_alert_rate,
        window=window,
        min_count=min_count,
    )


def record_bytes(message: InboundMessage, record: object) -> bytes:
    """What a dead letter carries for one record.

    The original bytes of a single-record message; an element of a batch re-serialised (or,
    when it cannot be, the whole message).
    """
    value = message.value or b""
    if value.lstrip()[:1] == b"{":
        return value
    try:
        return encode_json(record)
    except (TypeError, orjson.JSONEncodeError):  # e.g. nesting deeper than orjson writes
        return value


def apply_verdict(record: dict[str, Any], verdict: Admitted | None, outcome: BatchOutcome) -> bool:
    """Mark a score record with the alert gate's verdict; whether its alert may be sent.

    A suppressed alert gets ``"suppressed": "cooldown" | "unconfirmed"`` on the score topic and
    is counted; an emitted one reports ``suppressed_before`` when earlier ones were held back.
    """
    if verdict is None:
        return True
    if verdict.verdict != "alert":
        record["suppressed"] = verdict.verdict
        outcome.suppressed[verdict.verdict] += 1
        return False
    if verdict.suppressed_before:
        record["suppressed_before"] = verdict.suppressed_before
    return True


def decode_records(message: InboundMessage, *, max_bytes: int, max_records: int) -> list[Any]:
    """The records of one message: a JSON object, or each element of a JSON array.

    Raises:
        PayloadDecodeError: undecodable, too large, or not an object / array of objects.
    """
    payload = decode_json(message.value, max_bytes=max_bytes)
    if type(payload) is dict:
        return [payload]
    return split_records(payload, max_records=max_records)


@dataclass(slots=True)
class _Rows:
    values: list[list[float]] = field(default_factory=list)
    contexts: list[list[float]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    sources: list[tuple[InboundMessage, int]] = field(default_factory=list)


MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def check_ts(ts: object) -> None:
    """A record's ``ts``, when present, must be epoch milliseconds in years 1970-9999.

    Raises:
        PayloadDecodeError: ``invalid_record`` naming the value.
    """
    if ts is None or (type(ts) is int and 0 <= ts <= MAX_TS_MS):
        return
    detail = f"'ts' must be epoch milliseconds (an integer in [0, {MAX_TS_MS}]), got {ts!r:.40}"
    raise PayloadDecodeError(reason="invalid_record", detail=detail)


def _record_ts(record: dict[str, Any], message: InboundMessage) -> int:
    ts = record.get("ts")
    return ts if type(ts) is int else message.timestamp_ms or 0


@dataclass(frozen=True, slots=True)
class _Batch:
    scored: Scored
    score: npt.NDArray[np.float64]
    decided: Decisions
    segments: list[str | None] | None


def _segment_of(record: dict[str, Any], message: InboundMessage, field_name: str) -> str | None:
    """The record's segment: a top-level field, a ``context`` field, or the message key."""
    value = record.get(field_name)
    if value is None and isinstance(record.get("context"), dict):
        value = record["context"].get(field_name)
    if value is None and field_name == "key" and message.key:
        value = message.key.decode(errors="replace")
    return None if value is None else str(value)


def _features_of(record: object) -> object:
    if not isinstance(record, dict) or "features" not in record:
        detail = "each record must be an object with a 'features' field"
        raise PayloadDecodeError(reason="invalid_record", detail=detail)
    return record["features"]


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
        self._context = detector.preprocess.context if detector.conditional else None
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
        rows = _Rows()
        offsets = outcome.offsets
        for message in messages:
            # a poll returns each partition's records in offset order: the last one wins
            offsets[(message.topic, message.partition)] = message.offset + 1
            self._collect(message, rows, outcome)
        if rows.values:
            self._score(rows, outcome, now_ms)
        return outcome

    def _collect(self, message: InboundMessage, rows: _Rows, outcome: BatchOutcome) -> None:
        config = self.config
        try:
            records = decode_records(
                message,
                max_bytes=config.max_message_bytes,
                max_records=config.max_records_per_message,
            )
        except PayloadDecodeError as exc:
            outcome.records_consumed += 1
            outcome.dead_letter(config.dead_letter_topic, message, -1, message.value or b"", exc)
            return
        outcome.records_consumed += len(records)
        for index, record in enumerate(records):
            try:
                values = self._schema.vector(_features_of(record))
                check_ts(record.get("ts"))
                if self._context is not None:
                    rows.contexts.append(self._context.vector(record.get("context")))
            except PayloadDecodeError as exc:
                outcome.dead_letter(
                    self.config.dead_letter_topic,
                    message,
                    index,
                    record_bytes(message, record),
                    exc,
                )
                continue
            rows.values.append(values)
            rows.records.append(record)
            rows.sources.append((message, index))

    def _score(self, rows: _Rows, outcome: BatchOutcome, now_ms: int) -> None:
        n, d = len(rows.values), self._schema.dim
        flat = np.fromiter(itertools.chain.from_iterable(rows.values), np.float64, count=n * d)
        with np.errstate(over="ignore"):  # values beyond float32 become inf: caught below
            matrix = flat.reshape(n, d).astype(np.float32)
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
        ts = np.array([_record_ts(rows.records[i], rows.sources[i][0]) for i in kept], np.int64)
        outcome.event_ts_ms = ts
        top_idx, top_share = top_contributions(
            scored.scores.per_feature[flagged], self.config.top_features
        )
        explained = dict(
            zip(np.flatnonzero(flagged).tolist(), zip(top_idx, top_share, strict=True), strict=True)
        )
        batch = _Batch(scored, score, decided, segments)
        admitted = self._gate(rows, kept, ts, decided.severities) if self.gate.policy.active else {}
        # output records only where something is sent: every row with a score topic, else
        # only the alerts (the common case: about 1 % of rows)
        wanted = range(keep.size) if self.config.score_topic is not None else sorted(explained)
        for pos in wanted:
            row = int(keep[pos])
            record = self._record(rows, row, batch, pos, now_ms)
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
        rows: _Rows,
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
            record, message = rows.records[row], rows.sources[row][0]
            key = record.get("key")
            if key is None and message.key:
                key = message.key.decode(errors="replace")
            verdict = self.gate.observe(
                None if key is None else str(key), int(ts[pos]), str(severities[pos])
            )
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

    def _record(
        self, rows: _Rows, row: int, batch: _Batch, pos: int, now_ms: int
    ) -> dict[str, Any]:
        """The score record of scored row ``pos`` (input row ``row``); alerts add an explanation."""
        message, index = rows.sources[row]
        record = rows.records[row]
        p_value = float(batch.decided.p_values[pos])
        out = {
            "alert_id": f"{message.topic}:{message.partition}:{message.offset}:{index}",
            "id": None if record.get("id") is None else str(record["id"]),
            "key": record.get("key", message.key.decode(errors="replace") if message.key else None),
            "ts": _record_ts(record, message),
            "scored_at": now_ms,
            "model": {"name": self.model.name, "version": self.model.version},
            "score_kind": self.detector.bundle.score_kind,
            "score": float(batch.score[pos]),
            "threshold": float(batch.decided.thresholds[pos]),
            "p_value": None if math.isnan(p_value) else p_value,
            "severity": str(batch.decided.severities[pos]) or "normal",
            "components": {
                "recon": float(batch.scored.scores.recon_nll[pos]),
                "kl": float(batch.scored.scores.kl[pos]),
            },
        }
        if batch.segments is not None:
            out["segment"] = batch.segments[pos]
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
    def _out(topic: str, payload: dict[str, Any], rows: _Rows, row: int) -> OutboundMessage:
        message, _ = rows.sources[row]
        key = payload["key"]
        return OutboundMessage(topic, encode_json(payload), key.encode() if key else message.key)
