"""Per-batch handling of KPI points: validate, keep windows per series, score, decide. No I/O.

A message holds one point ``{"series", "ts", "value"}`` (or a JSON array of them; the
message key is the series id, so a series stays on one partition). Every consumed point ends
as exactly one of: scored, dead-lettered (bad input, a duplicate timestamp, a point out of
order), or *not scored yet* (its series is warming up or its window too sparse; or it was
already absorbed before a restart). The score of a point is its deviation from the model's
expectation of it given the rest of its window; alerts name the window span and the expected
vs observed value.

Window state survives restarts and partition moves through a state topic: at each
checkpoint, after the outputs are flushed, the pipeline emits one snapshot per changed
series (keyed by series, on the input's partition number) carrying the input offset it
covers; a consumer that is assigned a partition restores its series from there and skips
points at or before each series' snapshot offset, so scores after a restart equal scores
without one. A series evicted for capacity (``max_series``) or idleness (``series_ttl_s``)
gets a tombstone (null value) on the state topic, so compaction removes it and a restore
does not bring back every series ever seen; all bookkeeping is bounded by ``max_series``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from streamvae.bundle.window import WindowDetector
from streamvae.data.series_state import WindowStore
from streamvae.errors import PayloadDecodeError
from streamvae.service.outcome import (
    BatchOutcome,
    apply_verdict,
    check_ts,
    decode_records,
    field_text,
    record_bytes,
)
from streamvae.service.pipeline import drift_monitor
from streamvae.stream.codecs import decode_json, encode_json
from streamvae.thresholds import AlertGate, DriftSnapshot, HygienePolicy
from streamvae.types import InboundMessage, ModelRef, OutboundMessage

MAX_SERIES_ID = 256
EVICTION_INTERVAL_MS = 1_000  # idle series are looked for at most once a second


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiPipelineConfig:
    """Topics and limits of the KPI pipeline.

    ``state_partitions``: partitions of the state topic; a series' snapshot goes to its input
    partition number modulo this (0: the same number as the input partition).
    """

    alert_topic: str
    dead_letter_topic: str
    state_topic: str | None = None
    state_partitions: int = 0
    score_topic: str | None = None
    max_message_bytes: int = 1_048_576
    max_records_per_message: int = 10_000
    max_series: int = 100_000
    series_ttl_s: float = 86_400.0
    drift_window: int = 5_000
    drift_min_count: int = 200
    hygiene: HygienePolicy = field(default_factory=HygienePolicy)


@dataclass(frozen=True, slots=True)
class _Point:
    series: str
    ts: int
    value: float


@dataclass(frozen=True, slots=True)
class _Ready:
    point: _Point
    record: dict[str, Any]
    message: InboundMessage
    index: int
    values: npt.NDArray[np.float64]
    mask: npt.NDArray[np.float64]
    start_ts: int
    end_ts: int


def parse_point(record: object, key: bytes | None) -> _Point:
    """Validate one KPI record.

    Raises:
        PayloadDecodeError: ``invalid_record`` (shape, types) or ``non_finite``.
    """
    if not isinstance(record, dict):
        raise PayloadDecodeError(reason="invalid_record", detail="a KPI point must be an object")
    series = record.get("series")
    if series is None and key:
        series = key.decode(errors="replace")
    if not isinstance(series, str) or not 0 < len(series) <= MAX_SERIES_ID:
        detail = f"'series' must be a non-empty string of at most {MAX_SERIES_ID} characters"
        raise PayloadDecodeError(reason="invalid_record", detail=detail)
    ts = record.get("ts")
    if ts is None:
        raise PayloadDecodeError(reason="invalid_record", detail="a KPI point needs 'ts'")
    check_ts(ts)
    value = record.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool):
        detail = f"'value' must be a number, got {type(value).__name__}"
        raise PayloadDecodeError(reason="invalid_record", detail=detail)
    if not math.isfinite(value) or abs(value) > 3.4e38:
        raise PayloadDecodeError(reason="non_finite", detail="'value' is not a finite float32")
    return _Point(series, ts, float(value))


class KpiPipeline:
    """Turns polled KPI points into alerts, scores, dead letters and window state."""

    def __init__(
        self, detector: WindowDetector, model: ModelRef, config: KpiPipelineConfig
    ) -> None:
        self.detector = detector
        self.model = model
        self.config = config
        self.threshold = detector.threshold  # raises NotCalibratedError without one
        self.store = WindowStore(detector.preprocess.spec, max_series=config.max_series)
        self.scorers = detector.new_scorers()  # per-series state of the stream score
        self.gate = AlertGate(replace(config.hygiene, max_keys=config.max_series))
        self._applied: dict[str, tuple[str, int, int]] = {}  # series -> topic, partition, offset
        self._dirty: set[str] = set()
        self._tombstones: dict[str, int] = {}  # evicted series -> its input partition
        self._last_eviction_ms = -EVICTION_INTERVAL_MS
        self.drift = drift_monitor(self.threshold, config.drift_window, config.drift_min_count)

    def drift_snapshot(self) -> DriftSnapshot:
        """Live scores against the calibration scores."""
        return self.drift.snapshot()

    def install(self, detector: WindowDetector, model: ModelRef) -> None:
        """Score from the next batch on with another model (validated by the caller).

        The window spec must be the same (``check_replacement``): the live windows carry
        over, so no series warms up again. The drift window restarts against the new
        calibration scores. The ``stream`` score's per-series state carries over when the
        new bundle has the same stream settings (its tails adapt to the new model's
        residuals as they arrive); otherwise it starts again.
        """
        if detector.preprocess.spec != self.store.spec:
            msg = f"window spec {detector.preprocess.spec} differs from {self.store.spec}"
            raise ValueError(msg)
        old = self.detector.preprocess.stream if self.detector.streaming else None
        new = detector.preprocess.stream if detector.streaming else None
        if new != old:  # the stream state means something else now: it starts again
            self.scorers = detector.new_scorers()
        self.detector, self.model, self.threshold = detector, model, detector.threshold
        self.drift = drift_monitor(
            self.threshold, self.config.drift_window, self.config.drift_min_count
        )

    # ------------------------------------------------------------------ state
    def checkpoint_messages(self) -> list[OutboundMessage]:
        """Snapshots of the series changed since the last call (sent after the outputs)."""
        topic = self.config.state_topic
        if topic is None:
            self._dirty.clear()
            self._tombstones.clear()
            return []
        out = [
            OutboundMessage(topic, None, series.encode(), (), self.state_partition(partition))
            for series, partition in sorted(self._tombstones.items())
            if series not in self.store  # back since its eviction: its snapshot follows
        ]
        self._tombstones.clear()
        for series in sorted(self._dirty):
            snapshot = self.store.snapshot(series)
            source = self._applied.get(series)
            if snapshot is None or source is None:
                continue
            in_topic, partition, offset = source
            value = {"series": series, "topic": in_topic, "partition": partition}
            value |= {"offset": offset} | snapshot
            gate = self.gate.snapshot(series)
            if gate is not None:
                value["gate"] = gate
            scoring = None if self.scorers is None else self.scorers.snapshot(series)
            if scoring is not None:
                value["scoring"] = scoring
            target = self.state_partition(partition)
            out.append(OutboundMessage(topic, encode_json(value), series.encode(), (), target))
        self._dirty.clear()
        return out

    def state_partition(self, input_partition: int) -> int:
        """The state topic partition holding the snapshots of an input partition's series."""
        n = self.config.state_partitions
        return input_partition % n if n > 0 else input_partition

    def restore(
        self,
        records: Iterable[tuple[bytes | None, bytes | None]],
        partitions: Iterable[tuple[str, int]],
        now_ms: int = 0,
    ) -> int:
        """Take over ``partitions``: forget their series, restore them from state records.

        ``records`` are the state topic's ``(key, value)`` pairs, oldest first. Later records
        of a series win (the state topic is append-only or compacted) and a tombstone (null
        value) removes its series; a restored series counts as seen at ``now_ms`` (its idle
        time starts again). Malformed snapshots are skipped (those series warm up again).
        Returns the number restored.
        """
        owned = set(partitions)
        for series, (topic, partition, _) in list(self._applied.items()):
            if (topic, partition) in owned:
                self._drop(series)
                del self._applied[series]
        latest = self._latest_snapshots(records, owned)
        restored = 0
        for series, record in latest.items():
            try:
                source = (str(record["topic"]), int(record["partition"]), int(record["offset"]))
                self.store.restore(series, record, seen_ms=now_ms)
                if isinstance(record.get("gate"), dict):
                    self.gate.restore(series, record["gate"])
                if self.scorers is not None and isinstance(record.get("scoring"), dict):
                    self.scorers.restore(series, record["scoring"])
            except (KeyError, TypeError, ValueError):
                self._drop(series)
                continue  # malformed, or another window spec: the series warms up again
            self._applied[series] = source
            restored += 1
        return restored

    def _latest_snapshots(
        self,
        records: Iterable[tuple[bytes | None, bytes | None]],
        owned: set[tuple[str, int]],
    ) -> dict[str, dict[str, Any]]:
        """The last snapshot of each series of ``owned`` partitions, tombstones applied."""
        latest: dict[str, dict[str, Any]] = {}
        for key, raw in records:
            if raw is None:
                if key is not None:
                    latest.pop(key.decode(errors="replace"), None)
                continue
            try:
                record = decode_json(raw, max_bytes=self.config.max_message_bytes)
            except PayloadDecodeError:
                continue
            if isinstance(record, dict) and (record.get("topic"), record.get("partition")) in owned:
                latest[str(record.get("series"))] = record
        return latest

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Drop the series of partitions this consumer no longer owns."""
        gone = set(partitions)
        for series, (topic, partition, _) in list(self._applied.items()):
            if (topic, partition) in gone:
                self._drop(series)
                del self._applied[series]
                self._dirty.discard(series)

    def _drop(self, series: str) -> None:
        """Forget a series' window, alert gate and stream state."""
        self.store.drop(series)
        self.gate.drop(series)
        if self.scorers is not None:
            self.scorers.drop(series)

    # ------------------------------------------------------------------ batches
    def handle(self, messages: list[InboundMessage], now_ms: int) -> BatchOutcome:
        """Handle one poll's messages; never raises for bad input (it is dead-lettered)."""
        outcome = BatchOutcome()
        ready: list[_Ready] = []
        for message in messages:
            outcome.offsets[(message.topic, message.partition)] = message.offset + 1
            self._collect(message, outcome, ready, now_ms)
        if ready:
            self._score(ready, outcome, now_ms)
        if now_ms - self._last_eviction_ms >= EVICTION_INTERVAL_MS:  # a scan of every series
            self._last_eviction_ms = now_ms
            self.store.evict_idle(now_ms, int(self.config.series_ttl_s * 1000))
        self._forget_evicted()
        outcome.series_live = len(self.store)
        outcome.state_bytes = self.store.memory_bytes + (
            0 if self.scorers is None else self.scorers.memory_bytes
        )
        return outcome

    def _forget_evicted(self) -> None:
        """Drop the bookkeeping of series the store evicted; tombstone them at the checkpoint."""
        for series in self.store.drain_evicted():
            source = self._applied.pop(series, None)
            self._drop(series)  # its window is gone already; the rest goes with it
            self._dirty.discard(series)
            if source is not None:
                self._tombstones[series] = source[1]

    def _collect(
        self, message: InboundMessage, outcome: BatchOutcome, ready: list[_Ready], now_ms: int
    ) -> None:
        dead_topic = self.config.dead_letter_topic
        try:
            records = decode_records(
                message,
                max_bytes=self.config.max_message_bytes,
                max_records=self.config.max_records_per_message,
            )
        except PayloadDecodeError as exc:
            outcome.reject(dead_topic, message, exc)
            return
        outcome.records_consumed += len(records)
        for index, record in enumerate(records):
            try:
                point = parse_point(record, message.key)
            except PayloadDecodeError as exc:
                outcome.dead_letter(dead_topic, message, index, record_bytes(message, record), exc)
                continue
            applied = self._applied.get(point.series)
            source = (message.topic, message.partition)
            if applied is not None and applied[:2] == source and message.offset <= applied[2]:
                outcome.unscored["replayed"] += 1  # absorbed before a restart
                continue
            push = self.store.push(point.series, point.ts, point.value, now_ms)
            if push.status in ("duplicate", "out_of_order"):
                reason = "duplicate_point" if push.status == "duplicate" else "out_of_order"
                what = "a duplicate" if reason == "duplicate_point" else "older"
                detail = (
                    f"series {point.series!r} is at ts {push.end_ts}; point ts {point.ts} is {what}"
                )
                rejected = PayloadDecodeError(reason=reason, detail=detail)
                outcome.dead_letter(
                    dead_topic, message, index, record_bytes(message, record), rejected
                )
                continue
            self._applied[point.series] = (message.topic, message.partition, message.offset)
            self._dirty.add(point.series)
            if push.status != "ready" or push.values is None or push.mask is None:
                outcome.unscored[push.status] += 1
                if self.config.score_topic is not None:
                    status = self._status_record(point, message, index, push.status, now_ms)
                    outcome.outbound.append(self._out(self.config.score_topic, status, point))
                continue
            ready.append(
                _Ready(
                    point, record, message, index, push.values, push.mask, push.start_ts,
                    push.end_ts,
                )
            )  # fmt: skip

    def _score(self, ready: list[_Ready], outcome: BatchOutcome, now_ms: int) -> None:
        series = [r.point.series for r in ready]
        values = np.stack([r.values for r in ready])
        mask = np.stack([r.mask for r in ready])
        end_ts = np.array([r.end_ts for r in ready], np.int64)
        scored = self.detector.score(series, values, mask, end_ts)
        decided_scores = self.detector.decide_scores(scored, series, self.scorers)
        if not decided_scores.ready.all():  # the stream score is still warming up
            keep = self._hold_warming(ready, decided_scores.ready, outcome, now_ms)
            if keep.size == 0:
                return
            ready = [ready[j] for j in keep.tolist()]
            series = [series[j] for j in keep.tolist()]
            scored = scored.take(keep)
            decided_scores = decided_scores._replace(
                score=decided_scores.score[keep],
                parts={k: v[keep] for k, v in decided_scores.parts.items()},
            )
        score, parts = decided_scores.score, decided_scores.parts
        field = self.threshold.segment_field
        segments = None
        if field == "series":
            segments = list(series)
        elif field == "group":
            segments = [self.detector.preprocess.group(s) for s in series]
        decided = self.threshold.decide(score, segments)
        flagged = decided.severities != ""
        self.drift.update(score, flagged)
        outcome.records_scored += len(ready)
        outcome.score_ratios = np.divide(
            score, decided.thresholds, out=score.copy(), where=decided.thresholds > 0
        )
        outcome.event_ts_ms = np.array([r.point.ts for r in ready], np.int64)
        gated = self.gate.policy.active
        for i, item in enumerate(ready):
            verdict = (
                self.gate.observe(item.point.series, item.point.ts, str(decided.severities[i]))
                if gated
                else None
            )
            if not flagged[i] and self.config.score_topic is None:
                continue
            p_value = float(decided.p_values[i])
            record: dict[str, Any] = {
                "alert_id": f"{item.message.topic}:{item.message.partition}:"
                f"{item.message.offset}:{max(item.index, 0)}",
                "id": field_text(item.record.get("id")),
                "key": item.point.series,
                "series": item.point.series,
                "ts": item.point.ts,
                "scored_at": now_ms,
                "model": {"name": self.model.name, "version": self.model.version},
                "score_kind": self.detector.bundle.score_kind,
                "score": float(score[i]),
                "threshold": float(decided.thresholds[i]),
                "p_value": None if math.isnan(p_value) else p_value,
                "severity": str(decided.severities[i]) or "normal",
                "status": "scored",
                "components": {
                    "recon": float(scored.recon_nll[i]),
                    "kl": float(scored.kl[i]),
                }
                | {name: float(part[i]) for name, part in parts.items()},
            }
            if segments is not None:
                record["segment"] = segments[i]
            emit = apply_verdict(record, verdict, outcome)
            if self.config.score_topic is not None:
                outcome.outbound.append(self._out(self.config.score_topic, record, item.point))
            if flagged[i] and emit:
                record = record | {"explanation": self._explain(item, float(scored.expected[i]))}
                outcome.alerts[record["severity"]] += 1
                outcome.outbound.append(self._out(self.config.alert_topic, record, item.point))

    def _hold_warming(
        self,
        ready: list[_Ready],
        is_ready: npt.NDArray[np.bool_],
        outcome: BatchOutcome,
        now_ms: int,
    ) -> npt.NDArray[np.intp]:
        """Count (and publish the status of) points whose stream score is warming up.

        Returns:
            The indices of the points that were scored.
        """
        for j in np.flatnonzero(~is_ready).tolist():
            item = ready[j]
            outcome.unscored["warming_up"] += 1
            if self.config.score_topic is not None:
                status = self._status_record(
                    item.point, item.message, item.index, "warming_up", now_ms
                )
                outcome.outbound.append(self._out(self.config.score_topic, status, item.point))
        return np.flatnonzero(is_ready)

    def _explain(self, item: _Ready, expected: float) -> dict[str, Any]:
        observed = item.point.value
        return {
            "window": {
                "start_ts": item.start_ts,
                "end_ts": item.end_ts,
                "points": int(item.mask.size),
                "observed_points": int(item.mask.sum()),
            },
            "observed": observed,
            "expected": expected,
            "deviation": observed - expected,
        }

    def _status_record(
        self, point: _Point, message: InboundMessage, index: int, status: str, now_ms: int
    ) -> dict[str, Any]:
        """A not-scored point's record on the score topic: never reported as normal."""
        return {
            "alert_id": f"{message.topic}:{message.partition}:{message.offset}:{max(index, 0)}",
            "key": point.series,
            "series": point.series,
            "ts": point.ts,
            "scored_at": now_ms,
            "model": {"name": self.model.name, "version": self.model.version},
            "status": status,
            "score": None,
            "severity": None,
        }

    @staticmethod
    def _out(topic: str, payload: dict[str, Any], point: _Point) -> OutboundMessage:
        return OutboundMessage(topic, encode_json(payload), point.series.encode())
