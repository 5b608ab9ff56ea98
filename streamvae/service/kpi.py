"""KPI points into the scoring pipeline: validate, keep windows per series, score. No I/O.

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
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from streamvae.bundle.window import WindowDetector
from streamvae.data.series_state import WindowStore
from streamvae.errors import PayloadDecodeError
from streamvae.service.outcome import (
    BatchOutcome,
    check_ts,
    decode_records,
    field_text,
    record_bytes,
)
from streamvae.service.scoring import PipelineConfig, ScoringPipeline
from streamvae.stream.codecs import decode_json, encode_json
from streamvae.thresholds import AlertGate, ThresholdSet
from streamvae.types import InboundMessage, ModelRef, OutboundMessage

MAX_SERIES_ID = 256
EVICTION_INTERVAL_MS = 1_000  # idle series are looked for at most once a second


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiState:
    """Where and how much window state the KPI input keeps.

    Attributes:
        state_topic: the compacted topic of per-series snapshots (``None``: no restore).
        state_partitions: partitions of the state topic; a series' snapshot goes to its
            input partition number modulo this (0: the same number as the input partition).
        max_series: series kept at most (the least recently seen is evicted).
        series_ttl_s: a series unseen this long is evicted.
    """

    state_topic: str | None = None
    state_partitions: int = 0
    max_series: int = 100_000
    series_ttl_s: float = 86_400.0


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


@dataclass(slots=True)
class KpiScored:
    """The scored points of one poll, row-aligned."""

    ready: list[_Ready]
    score: npt.NDArray[np.float64]
    components: dict[str, npt.NDArray[np.float64]]
    segments: list[str | None] | None
    event_ts: npt.NDArray[np.int64]
    expected: npt.NDArray[np.float64]

    def gate_key(self, row: int) -> str | None:
        """The series: alerts are gated per series."""
        return self.ready[row].point.series

    def head(self, row: int) -> dict[str, Any]:
        """``alert_id``, ``id``, ``key`` and ``series`` (the series), ``ts``, ``status``."""
        item = self.ready[row]
        message = item.message
        return {
            "alert_id": f"{message.topic}:{message.partition}:{message.offset}:"
            f"{max(item.index, 0)}",
            "id": field_text(item.record.get("id")),
            "key": item.point.series,
            "series": item.point.series,
            "ts": item.point.ts,
            "status": "scored",
        }

    def out_key(self, row: int, record: dict[str, Any]) -> bytes | None:
        """The series id (a series' outputs stay in order on one partition)."""
        del record
        return self.ready[row].point.series.encode()

    def explain(self, rows: list[int], outcome: BatchOutcome) -> list[dict[str, Any] | None]:
        """The window's span, and the observed vs the expected value of the point."""
        del outcome
        out: list[dict[str, Any] | None] = []
        for row in rows:
            item, expected = self.ready[row], float(self.expected[row])
            observed = item.point.value
            out.append(
                {
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
            )
        return out


class KpiInput:
    """The KPI part of the scoring pipeline: per-series windows, stream scores and state."""

    payload: Literal["records", "npy"] = "records"

    def __init__(self, detector: WindowDetector, config: PipelineConfig, state: KpiState) -> None:
        self.config = config
        self.state = state
        self.state_topic = state.state_topic
        self.gate = AlertGate(replace(config.hygiene, max_keys=state.max_series))
        self.detector = detector
        self.store = WindowStore(detector.preprocess.spec, max_series=state.max_series)
        self.scorers = detector.new_scorers()  # per-series state of the stream score
        self._applied: dict[str, tuple[str, int, int]] = {}  # series -> topic, partition, offset
        self._dirty: set[str] = set()
        self._tombstones: dict[str, int] = {}  # evicted series -> its input partition
        self._last_eviction_ms = -EVICTION_INTERVAL_MS

    def install(self, detector: WindowDetector, model: ModelRef) -> ThresholdSet:
        """Score with another model from the next batch on (validated by the caller).

        The window spec must be the same (``check_replacement``): the live windows carry
        over, so no series warms up again. The ``stream`` score's per-series state carries
        over when the new bundle has the same stream settings (its tails adapt to the new
        model's residuals as they arrive); otherwise it starts again.

        Raises:
            ValueError: another window spec.
            NotCalibratedError: the bundle has no thresholds.
        """
        threshold = detector.threshold
        if detector.preprocess.spec != self.store.spec:
            msg = f"window spec {detector.preprocess.spec} differs from {self.store.spec}"
            raise ValueError(msg)
        old = self.detector.preprocess.stream if self.detector.streaming else None
        new = detector.preprocess.stream if detector.streaming else None
        if new != old:  # the stream state means something else now: it starts again
            self.scorers = detector.new_scorers()
        self.detector, self.model, self.threshold = detector, model, threshold
        return threshold

    # ------------------------------------------------------------------ state
    def checkpoint_messages(self) -> list[OutboundMessage]:
        """Snapshots of the series changed since the last call (sent after the outputs)."""
        topic = self.state_topic
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
        n = self.state.state_partitions
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
    def collect(
        self, messages: list[InboundMessage], outcome: BatchOutcome, now_ms: int
    ) -> KpiScored | None:
        """Push the poll's points into their windows; score the full, warmed-up ones."""
        ready: list[_Ready] = []
        for message in messages:
            self._collect(message, outcome, ready, now_ms)
        return self._score(ready, outcome, now_ms) if ready else None

    def finish(self, outcome: BatchOutcome, now_ms: int) -> None:
        """Evict idle series (at most once a second); report the live series and state size."""
        if now_ms - self._last_eviction_ms >= EVICTION_INTERVAL_MS:  # a scan of every series
            self._last_eviction_ms = now_ms
            self.store.evict_idle(now_ms, int(self.state.series_ttl_s * 1000))
        self._forget_evicted()
        outcome.series_live = len(self.store)
        outcome.state_bytes = self.store.memory_bytes + (
            0 if self.scorers is None else self.scorers.memory_bytes
        )

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

    def _score(self, ready: list[_Ready], outcome: BatchOutcome, now_ms: int) -> KpiScored | None:
        series = [r.point.series for r in ready]
        values = np.stack([r.values for r in ready])
        mask = np.stack([r.mask for r in ready])
        end_ts = np.array([r.end_ts for r in ready], np.int64)
        scored = self.detector.score(series, values, mask, end_ts)
        decided = self.detector.decide_scores(scored, series, self.scorers)
        if not decided.ready.all():  # the stream score is still warming up
            keep = self._hold_warming(ready, decided.ready, outcome, now_ms)
            if keep.size == 0:
                return None
            ready = [ready[j] for j in keep.tolist()]
            series = [series[j] for j in keep.tolist()]
            scored = scored.take(keep)
            decided = decided._replace(
                score=decided.score[keep], parts={k: v[keep] for k, v in decided.parts.items()}
            )
        field = self.threshold.segment_field
        segments: list[str | None] | None = None
        if field == "series":
            segments = list(series)
        elif field == "group":
            segments = [self.detector.preprocess.group(s) for s in series]
        components = {"recon": scored.recon_nll, "kl": scored.kl} | dict(decided.parts)
        return KpiScored(
            ready, decided.score, components, segments,
            np.array([r.point.ts for r in ready], np.int64), scored.expected,
        )  # fmt: skip

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


def kpi_pipeline(
    detector: WindowDetector, model: ModelRef, config: PipelineConfig, state: KpiState
) -> ScoringPipeline:
    """The scoring pipeline of a KPI window model."""
    return ScoringPipeline(KpiInput(detector, config, state), detector, model, config)
