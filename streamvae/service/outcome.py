"""What one batch produced, and the record-level helpers every pipeline shares. No I/O."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from streamvae.errors import PayloadDecodeError
from streamvae.stream.codecs import decode_json, encode_json, split_records
from streamvae.thresholds import Admitted, bounded_key
from streamvae.types import InboundMessage, OutboundMessage

MAX_DETAIL_CHARS = 500


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
    errors: Counter[str] = field(default_factory=Counter)  # internal, handled: by kind

    def dead_letter(
        self,
        topic: str,
        message: InboundMessage,
        index: int,
        value: bytes,
        exc: PayloadDecodeError,
        extra: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        """Send ``value`` (element ``index`` of ``message``, -1: all of it) to ``topic``.

        Headers: ``error`` (reason code), ``detail``, ``source``
        (``topic:partition:offset:index``), ``extra``, then the input's own headers.
        """
        headers = (
            ("error", exc.reason.encode()),
            ("detail", exc.detail[:MAX_DETAIL_CHARS].encode(errors="replace")),
            ("source", f"{message.topic}:{message.partition}:{message.offset}:{index}".encode()),
            *extra,
            *message.headers,
        )
        self.outbound.append(OutboundMessage(topic, value, message.key, headers))
        self.dead_letters[exc.reason] += 1

    def reject(
        self,
        topic: str,
        message: InboundMessage,
        exc: PayloadDecodeError,
        extra: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        """Dead-letter a whole message (its original bytes) as one consumed record.

        Its offset counts as handled: the partition moves past it.
        """
        self.records_consumed += 1
        self.dead_letter(topic, message, -1, message.value or b"", exc, extra)
        part = (message.topic, message.partition)
        self.offsets[part] = max(message.offset + 1, self.offsets.get(part, 0))

    def processing_error(self, topic: str, message: InboundMessage, exc: BaseException) -> None:
        """Dead-letter a whole message whose handling raised ``exc`` (not a decode error).

        Reason ``processing_error``; headers ``exception`` (the type's name) and ``detail``
        (its message, shortened); the value is the message's original bytes.
        """
        detail = f"{type(exc).__name__}: {exc}"
        error = PayloadDecodeError(reason="processing_error", detail=detail)
        exception = ("exception", type(exc).__qualname__[:MAX_DETAIL_CHARS].encode())
        self.reject(topic, message, error, (exception,))

    def merge(self, other: BatchOutcome) -> None:
        """Add what ``other`` (a later part of the same poll) produced to this outcome."""
        self.outbound.extend(other.outbound)
        self.records_consumed += other.records_consumed
        self.records_scored += other.records_scored
        self.dead_letters.update(other.dead_letters)
        self.alerts.update(other.alerts)
        self.event_ts_ms = np.concatenate([self.event_ts_ms, other.event_ts_ms])
        self.score_ratios = np.concatenate([self.score_ratios, other.score_ratios])
        for part, offset in other.offsets.items():  # the later offset of a partition wins
            self.offsets[part] = max(offset, self.offsets.get(part, offset))
        self.unscored.update(other.unscored)
        if other.series_live is not None:
            self.series_live = other.series_live
        if other.state_bytes is not None:
            self.state_bytes = other.state_bytes
        self.shadow_scored += other.shadow_scored
        self.shadow_alerts.update(other.shadow_alerts)
        self.suppressed.update(other.suppressed)
        self.errors.update(other.errors)


def field_text(value: object) -> str | None:
    """A record field of any JSON type as the text an output carries (``None`` stays ``None``).

    Strings are used as they are, anything else as its compact JSON text (``7`` -> ``"7"``,
    ``{}`` -> ``"{}"``); longer than 256 characters is shortened by ``bounded_key``.
    """
    if value is None:
        return None
    if type(value) is str:
        return bounded_key(value)
    try:
        text = orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):  # integers beyond 64 bits, deep nesting
        text = repr(value)
    return bounded_key(text)


def message_key_text(message: InboundMessage) -> str | None:
    """The message key as bounded text (any bytes: invalid UTF-8 replaced); ``None`` if empty."""
    return bounded_key(message.key.decode(errors="replace")) if message.key else None


def record_key(record: dict[str, Any], message: InboundMessage) -> str | None:
    """A record's key: its ``key`` field as text, else the message key, else ``None``."""
    key = field_text(record.get("key"))
    return message_key_text(message) if key is None else key


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


def record_ts(record: dict[str, Any], message: InboundMessage) -> int:
    """Event time of a record: its ``ts``, else the message timestamp, else 0."""
    ts = record.get("ts")
    return ts if type(ts) is int else message.timestamp_ms or 0


MAX_OUTPUT_KEY_BYTES = 1_024


def output_size(message: OutboundMessage) -> int:
    """Bytes of an output's value, key and headers (the broker's record overhead aside)."""
    headers = sum(len(k) + len(v) for k, v in message.headers)
    return len(message.value or b"") + len(message.key or b"") + headers


def fit_output(message: OutboundMessage, limit: int, dead_letter_topic: str) -> OutboundMessage:
    """``message`` itself when it fits in ``limit`` bytes, else a dead letter that does.

    A broker refuses a record over its ``message.max.bytes`` at delivery, which would fail
    the flush, so the batch would never be committed and its partition would stall. An
    oversize dead letter is truncated (header ``truncated``: its original size; the input
    stays on its topic at the ``source`` offset); any other oversize output becomes a dead
    letter with reason ``output_too_large`` and header ``target-topic``, carrying the head
    of the output. Keys are cut to ``MAX_OUTPUT_KEY_BYTES``, headers kept while they fit a
    quarter of ``limit``.
    """
    size = output_size(message)
    if size <= limit:
        return message
    value = message.value or b""
    if message.topic == dead_letter_topic:
        marks: tuple[tuple[str, bytes], ...] = (("truncated", str(len(value)).encode()),)
        headers = message.headers
    else:
        detail = f"output of {size} bytes for {message.topic!r} exceeds max_output_bytes={limit}"
        marks = (
            ("error", b"output_too_large"),
            ("detail", detail.encode()),
            ("target-topic", message.topic.encode()[:MAX_DETAIL_CHARS]),
        )
        headers = ()
    budget = limit // 4
    kept: list[tuple[str, bytes]] = []
    used = sum(len(k) + len(v) for k, v in marks)
    for name, header in headers:
        used += len(name) + len(header)
        if used > budget:
            break
        kept.append((name, header))
    all_headers = (*marks[:1], *kept, *marks[1:]) if headers else marks
    key = None if message.key is None else message.key[:MAX_OUTPUT_KEY_BYTES]
    room = limit - len(key or b"") - sum(len(k) + len(v) for k, v in all_headers)
    return OutboundMessage(dead_letter_topic, value[: max(room, 0)], key, all_headers)
