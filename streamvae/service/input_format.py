"""What producers send, turned into the JSON records the pipelines read. No I/O of its own.

Two adaptations, each off unless configured, wrapped around a pipeline:

* **Avro** (``kafka.value_format: avro``): each message is Confluent-framed Avro; its datum
  becomes a JSON record. For feature-vector models a flat datum's fields are gathered by name
  into ``features`` (and the model's context fields into ``context``); other fields (``id``,
  ``ts``, ``key``, a segment) stay where they are; a datum with a ``features`` field is taken
  as it is. Then the pipeline validates it exactly as JSON: a missing feature is
  ``schema_mismatch``, a null or a string ``invalid_record``. A dead letter carries the
  original Avro bytes.
* **Header fields** (``header_fields``, header name -> record field): a record without that
  field takes the header's value, as text (any bytes: invalid UTF-8 is replaced, length
  bounded), e.g. the segment of a per-tenant threshold or the alert key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamvae.errors import PayloadDecodeError
from streamvae.service.outcome import BatchOutcome
from streamvae.service.runner import BatchHandler
from streamvae.stream.avro import SchemaSource, decode_avro
from streamvae.stream.codecs import decode_json, encode_json
from streamvae.thresholds import DriftSnapshot, bounded_key
from streamvae.types import InboundMessage, OutboundMessage


class InputAdapter:
    """A ``BatchHandler`` that adapts each message, then hands the batch to ``inner``.

    Args:
        inner: the pipeline.
        dead_letter_topic: where undecodable messages go (``invalid_avro``, ...).
        schemas: Avro writer schemas by id; ``None``: the input is JSON.
        feature_names: the model's features (``None``: not a feature-vector model).
        context_names: the model's context fields (conditional models).
        header_fields: header name -> record field filled from it when absent.
        max_bytes: ``max_message_bytes``, for re-reading JSON.
    """

    def __init__(
        self,
        inner: BatchHandler,
        *,
        dead_letter_topic: str,
        schemas: SchemaSource | None = None,
        feature_names: tuple[str, ...] | None = None,
        context_names: tuple[str, ...] = (),
        header_fields: Mapping[str, str] | None = None,
        max_bytes: int = 1_048_576,
    ) -> None:
        self.inner = inner
        self.dead_letter_topic = dead_letter_topic
        self.schemas = schemas
        self.feature_names = feature_names
        self._features = frozenset(feature_names or ())
        self.context_names = context_names
        self.header_fields = dict(header_fields or {})
        self.max_bytes = max_bytes

    @property
    def active(self) -> bool:
        """Whether anything is adapted (else the pipeline can be used directly)."""
        return self.schemas is not None or bool(self.header_fields)

    def drift_snapshot(self) -> DriftSnapshot:
        """The pipeline's drift statistics."""
        return self.inner.drift_snapshot()

    def checkpoint_messages(self) -> list[OutboundMessage]:
        """The pipeline's state to persist."""
        return self.inner.checkpoint_messages()

    def handle(self, messages: list[InboundMessage], now_ms: int) -> BatchOutcome:
        """Adapt every message (dead-lettering those that cannot be), then handle the rest."""
        outcome = BatchOutcome()
        adapted: list[InboundMessage] = []
        originals: dict[bytes, bytes] = {}  # source header prefix -> the original value
        for message in messages:
            try:
                value = self.adapt(message)
            except PayloadDecodeError as exc:
                outcome.reject(self.dead_letter_topic, message, exc)
                continue
            if value is not message.value and self.schemas is not None and message.value:
                prefix = f"{message.topic}:{message.partition}:{message.offset}:".encode()
                originals[prefix] = message.value
            adapted.append(message._replace(value=value))
        if adapted:
            inner = self.inner.handle(adapted, now_ms)
            if originals:
                inner.outbound = [self._original(m, originals) for m in inner.outbound]
            outcome.merge(inner)
        return outcome

    def _original(self, message: OutboundMessage, originals: dict[bytes, bytes]) -> OutboundMessage:
        """A dead letter of a transcoded message carries the bytes the producer sent."""
        if message.topic != self.dead_letter_topic:
            return message
        source = dict(message.headers).get("source", b"")
        original = originals.get(source[: source.rfind(b":") + 1])
        return message if original is None else message._replace(value=original)

    def adapt(self, message: InboundMessage) -> bytes | None:
        """The message value as the pipeline reads it.

        Raises:
            PayloadDecodeError: an Avro message that cannot be decoded.
        """
        if self.schemas is not None:
            datum = decode_avro(message.value, self.schemas)
            if not isinstance(datum, dict):
                detail = f"an Avro record is expected, got {type(datum).__name__}"
                raise PayloadDecodeError(reason="invalid_record", detail=detail)
            return encode_json(self._with_headers(self._record(datum), message))
        if not self.header_fields or not self._headers_present(message):
            return message.value
        try:
            payload = decode_json(message.value, max_bytes=self.max_bytes)
        except PayloadDecodeError:
            return message.value  # the pipeline dead-letters it with its own reason
        if isinstance(payload, dict):
            return encode_json(self._with_headers(payload, message))
        if isinstance(payload, list):
            return encode_json(
                [self._with_headers(r, message) if isinstance(r, dict) else r for r in payload]
            )
        return message.value

    def _record(self, datum: dict[str, Any]) -> dict[str, Any]:
        """A decoded Avro datum laid out as a JSON input record."""
        if self.feature_names is None or "features" in datum:
            return datum
        record = {k: v for k, v in datum.items() if k not in self._features}
        try:  # every feature there: a list in schema order (the pipeline's fastest path)
            record["features"] = [datum[n] for n in self.feature_names]
        except KeyError:  # named, so the pipeline names the missing ones
            record["features"] = {n: datum[n] for n in self.feature_names if n in datum}
        if self.context_names:
            context = {c: datum[c] for c in self.context_names if c in datum}
            for c in context:
                record.pop(c, None)
            record["context"] = context
        return record

    def _headers_present(self, message: InboundMessage) -> bool:
        return any(name in self.header_fields for name, _ in message.headers)

    def _with_headers(self, record: dict[str, Any], message: InboundMessage) -> dict[str, Any]:
        """``record`` with the configured header fields it lacks (the first header of a name)."""
        for name, value in message.headers:
            field = self.header_fields.get(name)
            if field is not None and record.get(field) is None:
                text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else ""
                record[field] = bounded_key(text)
        return record
