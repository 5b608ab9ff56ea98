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
from streamvae.thresholds import Admitted
from streamvae.types import InboundMessage, OutboundMessage


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
