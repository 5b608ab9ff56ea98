"""The one scoring pipeline every input kind goes through: decide, record, gate, route. No I/O.

An input kind (feature vectors, KPI windows, images) supplies a :class:`KindInput`: how to
turn one poll's messages into scored rows (dead-lettering what is bad, on the way), and how
to explain an alert. Everything after the score is here, once: the thresholds' decision
(per segment when calibrated so), the drift monitor, the score ratios and event times the
metrics read, the alert gate (cooldown, m-of-n confirmation), the score record (the alert
topic's contract, the same fields for every kind) and where each record goes.

The alert record::

    {"alert_id": "topic:partition:offset:index", "id": ..., "key": ..., "ts": ...,
     <fields of the kind, e.g. "series">, "scored_at": ms, "model": {"name", "version"},
     "score_kind": ..., "score": ..., "threshold": ..., "p_value": ... | null,
     "severity": "warning" | "critical" | "normal", "components": {...},
     ["segment": ...], ["suppressed" | "suppressed_before": ...], ["explanation": {...}]}

Score records (on the score topic, when configured) are the same without ``explanation``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from streamvae.bundle import Detector
from streamvae.service.outcome import BatchOutcome, apply_verdict
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

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineConfig:
    """Topics and limits every input kind shares.

    ``max_records_per_message``: records of a JSON array, or images of one ``.npy`` batch.
    """

    alert_topic: str
    dead_letter_topic: str
    score_topic: str | None = None
    max_message_bytes: int = 1_048_576
    max_records_per_message: int = 10_000
    drift_window: int = 5_000
    drift_min_count: int = 200
    hygiene: HygienePolicy = field(default_factory=HygienePolicy)


class ScoredRows(Protocol):
    """One poll's scored rows of an input kind, row-aligned (``n`` rows).

    Attributes:
        score: ``(n,)`` the bundle's score kind, which the thresholds decide.
        components: ``(n,)`` parts reported in each record's ``components``.
        segments: each row's segment for per-segment thresholds, else ``None``.
        event_ts: ``(n,)`` event time (epoch ms) of each row.
    """

    score: F64
    components: dict[str, F64]
    segments: list[str | None] | None
    event_ts: npt.NDArray[np.int64]

    def gate_key(self, row: int) -> str | None:
        """The row's key for the alert gate (``None``: never suppressed)."""
        ...

    def head(self, row: int) -> dict[str, Any]:
        """The record's leading fields: ``alert_id``, ``id``, ``key``, ``ts`` and the kind's."""
        ...

    def out_key(self, row: int, record: dict[str, Any]) -> bytes | None:
        """The Kafka key of the row's outputs."""
        ...

    def explain(self, rows: list[int], outcome: BatchOutcome) -> list[dict[str, Any] | None]:
        """The ``explanation`` of each alerting row (``None``: the alert carries none).

        One call per batch: an image map costs a pass of the model.
        """
        ...


class KindInput(Protocol):
    """What an input kind supplies to :class:`ScoringPipeline`.

    ``payload``: what its messages hold, ``records`` (JSON or Avro records) or ``npy``.
    """

    gate: AlertGate
    payload: Literal["records", "npy"]

    def install(self, detector: Any, model: ModelRef) -> ThresholdSet:
        """Score with ``detector`` (of ``model``) from the next batch on; returns its thresholds.

        Raises:
            ValueError: it reads the messages differently (``check_replacement`` refuses it
                before; this is the last guard).
            NotCalibratedError: it has no thresholds.
        """
        ...

    def collect(
        self, messages: list[InboundMessage], outcome: BatchOutcome, now_ms: int
    ) -> ScoredRows | None:
        """Read and score one poll (``None``: nothing scored).

        Every record consumed is counted in ``outcome`` and either scored (returned),
        dead-lettered or counted as unscored.
        """
        ...

    def finish(self, outcome: BatchOutcome, now_ms: int) -> None:
        """After the batch's outputs are routed (bookkeeping, state size)."""
        ...

    def checkpoint_messages(self) -> list[OutboundMessage]:
        """State to persist at a checkpoint, sent after the outputs (none for stateless kinds)."""
        ...


@runtime_checkable
class StatefulInput(Protocol):
    """An input kind that keeps per-key state in a state topic (KPI windows).

    Its snapshots are sent at each checkpoint; a consumer assigned a partition restores
    that partition's keys from the state topic before scoring it.
    """

    state_topic: str | None

    def state_partition(self, input_partition: int) -> int:
        """The state topic partition of an input partition's keys."""
        ...

    def restore(
        self,
        records: Iterable[tuple[bytes | None, bytes | None]],
        partitions: Iterable[tuple[str, int]],
        now_ms: int = 0,
    ) -> int:
        """Take over ``partitions`` from the state records; returns the keys restored."""
        ...


def drift_monitor(threshold: ThresholdSet, window: int, min_count: int) -> DriftMonitor:
    """Live scores against the default threshold's calibration scores and alert rate."""
    return DriftMonitor(
        threshold.reference.get("", np.zeros(0)),
        threshold.default.expected_alert_rate,
        window=window,
        min_count=min_count,
    )


class ScoringPipeline:
    """Turns polled messages into alerts, scores, dead letters and state, for any input kind.

    ``input`` is the kind's part (``FeatureInput``, ``KpiInput``, ``ImageInput``, or any
    :class:`KindInput`); ``model`` the served version, named in every record.
    """

    def __init__(
        self, input: KindInput, detector: Detector, model: ModelRef, config: PipelineConfig
    ) -> None:
        self.input = input
        self.config = config
        self.install(detector, model)

    @property
    def gate(self) -> AlertGate:
        """The alert gate (cooldown, confirmation) of every key."""
        return self.input.gate

    @property
    def detector(self) -> Detector:
        """The detector in force."""
        return self._detector

    def install(self, detector: Detector, model: ModelRef) -> None:
        """Score from the next batch on with ``detector`` (validated by the caller).

        The drift window restarts against the new calibration scores.

        Raises:
            ValueError, NotCalibratedError: see :meth:`KindInput.install`.
        """
        self.threshold = self.input.install(detector, model)
        self._detector, self.model = detector, model
        self.drift = drift_monitor(
            self.threshold, self.config.drift_window, self.config.drift_min_count
        )

    def drift_snapshot(self) -> DriftSnapshot:
        """Live scores against the calibration scores (see ``DriftMonitor``)."""
        return self.drift.snapshot()

    def checkpoint_messages(self) -> list[OutboundMessage]:
        """The input kind's state to persist at a checkpoint."""
        return self.input.checkpoint_messages()

    def handle(self, messages: list[InboundMessage], now_ms: int) -> BatchOutcome:
        """Handle one poll's messages; never raises for bad input (it is dead-lettered)."""
        outcome = BatchOutcome()
        # a poll returns each partition's records in offset order: the last one wins
        outcome.offsets = {(m.topic, m.partition): m.offset + 1 for m in messages}
        rows = self.input.collect(messages, outcome, now_ms)
        if rows is not None and rows.score.size:
            self._route(rows, outcome, now_ms)
        self.input.finish(outcome, now_ms)
        return outcome

    def _route(self, rows: ScoredRows, outcome: BatchOutcome, now_ms: int) -> None:
        """Decide, record, gate and route the scored rows."""
        score = rows.score
        decided = self.threshold.decide(score, rows.segments)
        severities = decided.severities
        flagged = severities != ""
        self.drift.update(score, flagged)
        outcome.records_scored += int(score.size)
        outcome.score_ratios = np.divide(
            score, decided.thresholds, out=score.copy(), where=decided.thresholds > 0
        )
        outcome.event_ts_ms = rows.event_ts
        verdicts = self._gate(rows, severities) if self.gate.policy.active else {}
        flagged_rows: list[int] = np.flatnonzero(flagged).tolist()
        if self.config.score_topic is None and not flagged_rows:
            return  # the common batch: nothing to send
        # the alerts the gate lets through, explained in one call (a map costs a pass)
        alerting = [
            r for r in flagged_rows if (v := verdicts.get(r)) is None or v.verdict == "alert"
        ]
        explanations = rows.explain(alerting, outcome) if alerting else []
        self._send(rows, decided, verdicts, dict(zip(alerting, explanations, strict=True)),
                   flagged_rows, outcome, now_ms)  # fmt: skip

    def _send(
        self,
        rows: ScoredRows,
        decided: Decisions,
        verdicts: dict[int, Admitted],
        explanations: dict[int, dict[str, Any] | None],
        flagged_rows: list[int],
        outcome: BatchOutcome,
        now_ms: int,
    ) -> None:
        """Build each score record once; send it to the score topic and, alerting, as an alert.

        Records only where something is sent: every row with a score topic, else only the
        flagged ones (the common case: about 1 % of rows). Values go through one ``tolist``
        per column, not a numpy scalar per field.
        """
        score_topic, alert_topic = self.config.score_topic, self.config.alert_topic
        wanted = list(range(rows.score.size)) if score_topic is not None else flagged_rows
        idx = np.asarray(wanted, np.intp)
        values = rows.score[idx].tolist()
        thresholds = decided.thresholds[idx].tolist()
        p_values = decided.p_values[idx].tolist()
        levels = decided.severities[idx].tolist()
        names = tuple(rows.components)
        parts = list(zip(*(part[idx].tolist() for part in rows.components.values()), strict=True))
        shared = {
            "model": {"name": self.model.name, "version": self.model.version},
            "score_kind": self._detector.bundle.score_kind,
        }
        segments = rows.segments
        send = outcome.outbound.append
        for j, row in enumerate(wanted):
            record = rows.head(row)
            record["scored_at"] = now_ms
            record.update(shared)
            record["score"] = values[j]
            record["threshold"] = thresholds[j]
            p_value = p_values[j]
            record["p_value"] = None if math.isnan(p_value) else p_value
            record["severity"] = levels[j] or "normal"
            record["components"] = dict(zip(names, parts[j], strict=True))
            if segments is not None:
                record["segment"] = segments[row]
            verdict = verdicts.get(row)
            if verdict is not None:
                apply_verdict(record, verdict, outcome)
            key = rows.out_key(row, record)
            if score_topic is not None:
                send(OutboundMessage(score_topic, encode_json(record), key))
            if row in explanations:
                explanation = explanations[row]
                if explanation is not None:
                    record["explanation"] = explanation
                outcome.alerts[record["severity"]] += 1
                send(OutboundMessage(alert_topic, encode_json(record), key))

    def _gate(self, rows: ScoredRows, severities: npt.NDArray[np.str_]) -> dict[int, Admitted]:
        """The alert gate's verdict per flagged row, by the row's key and event time.

        Every row is shown to the gate when its confirmation rule needs the history of
        unflagged scores too, else only the flagged ones.
        """
        positions = (
            range(severities.size)
            if self.gate.policy.needs_history
            else np.flatnonzero(severities != "").tolist()
        )
        verdicts: dict[int, Admitted] = {}
        ts = rows.event_ts
        for row in positions:
            verdict = self.gate.observe(rows.gate_key(row), int(ts[row]), str(severities[row]))
            if verdict is not None:
                verdicts[row] = verdict
        return verdicts
