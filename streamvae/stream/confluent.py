"""The same ports on confluent-kafka (librdkafka): a faster client, chosen by ``kafka.client``.

kafka-python stays the default; ``pip install 'streamvae[fast]'`` adds this one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from streamvae.config import KafkaSettings
from streamvae.errors import BrokerError
from streamvae.stream.producer import raise_delivery_errors
from streamvae.types import InboundMessage, OutboundMessage

logger = logging.getLogger(__name__)


def _confluent() -> Any:
    try:
        import confluent_kafka
    except ImportError:
        msg = "kafka.client=confluent needs confluent-kafka: pip install 'streamvae[fast]'"
        raise BrokerError(msg) from None
    return confluent_kafka


def _common(settings: KafkaSettings) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        conf["sasl.mechanism"] = settings.sasl_mechanism
        conf["sasl.username"] = settings.sasl_username
        conf["sasl.password"] = settings.sasl_secret()
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        locations = {
            "ssl.ca.location": settings.ssl_cafile,
            "ssl.certificate.location": settings.ssl_certfile,
            "ssl.key.location": settings.ssl_keyfile,
        }
        conf |= {key: value for key, value in locations.items() if value is not None}
        if settings.ssl_password is not None:
            conf["ssl.key.password"] = settings.ssl_password.get_secret_value()
        conf["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.ssl_check_hostname else "none"
        )
    return conf


class ConfluentMessageSource:
    """MessageSource on ``confluent_kafka.Consumer`` (manual commits, commit on revoke)."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: tuple[str, ...],
        *,
        on_assignment: Callable[[list[tuple[str, int]]], None] | None = None,
        before_revoke: Callable[[], None] | None = None,
    ) -> None:
        ck = _confluent()
        self._tp = ck.TopicPartition
        self._pending: dict[tuple[str, int], int] = {}
        self._next: dict[tuple[str, int], int] = {}
        self._on_assignment = on_assignment
        self._before_revoke = before_revoke
        conf = _common(settings) | {
            "group.id": settings.group_id,
            "client.id": settings.client_id,
            "enable.auto.commit": False,
            "auto.offset.reset": settings.auto_offset_reset,
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": settings.heartbeat_interval_ms,
            "fetch.wait.max.ms": settings.fetch_max_wait_ms,
            "fetch.max.bytes": settings.fetch_max_bytes,
            "max.partition.fetch.bytes": settings.max_partition_fetch_bytes,
        }
        try:
            self._consumer = ck.Consumer(conf)
        except ck.KafkaException as exc:
            msg = f"cannot create a Kafka consumer for {settings.bootstrap_servers!r}: {exc}"
            raise BrokerError(msg) from exc
        self._consumer.subscribe(list(topics), on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        parts = sorted((p.topic, p.partition) for p in partitions)
        logger.info("partitions assigned partitions=%s", parts)
        if self._on_assignment is not None:
            self._on_assignment(parts)

    def _revoked(self, consumer: Any, partitions: list[Any]) -> None:
        if self._before_revoke is not None:
            self._before_revoke()
        revoked = [(p.topic, p.partition) for p in partitions]
        offsets = {k: self._pending.pop(k) for k in revoked if k in self._pending}
        for key in revoked:
            self._next.pop(key, None)
        if offsets:
            self._commit(offsets)
        logger.info("partitions revoked partitions=%s", sorted(revoked))

    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[InboundMessage]:
        """Up to ``max_records`` records (``consume`` returns as soon as some are ready)."""
        messages = self._consumer.consume(
            num_messages=max_records or 2000, timeout=timeout_ms / 1000
        )
        out: list[InboundMessage] = []
        new = tuple.__new__  # InboundMessage without its Python-level __new__: once per record
        for m in messages:
            if m.error() is not None:
                self._consumer_error(m.error())
                continue
            ts_type, ts = m.timestamp()
            out.append(
                new(InboundMessage, (m.topic(), m.partition(), m.offset(), m.value(), m.key(),
                                     ts if ts_type else None, tuple(m.headers() or ())))
            )  # fmt: skip
        self._next.update({(m.topic, m.partition): m.offset + 1 for m in out})
        return out

    @staticmethod
    def _consumer_error(error: Any) -> None:
        if error.fatal():
            msg = f"fatal Kafka consumer error: {error}"
            raise BrokerError(msg)
        logger.warning("consumer error error=%s", error)

    def mark_processed(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Record that every record before ``offsets[(topic, partition)]`` is done."""
        self._pending.update(offsets)

    def _commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        tps = [self._tp(t, p, o) for (t, p), o in offsets.items()]
        self._consumer.commit(offsets=tps, asynchronous=False)

    def commit(self) -> None:
        """Commit the marked offsets synchronously."""
        if self._pending:
            pending, self._pending = self._pending, {}
            self._commit(pending)

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the high watermark last seen in a fetch response (cached)."""
        lags = {}
        for (topic, partition), next_offset in self._next.items():
            _, high = self._consumer.get_watermark_offsets(self._tp(topic, partition), cached=True)
            if high >= 0:
                lags[(topic, partition)] = max(0, high - next_offset)
        return lags

    def close(self) -> None:
        """Leave the group."""
        self._consumer.close()


class ConfluentMessageSink:
    """MessageSink on ``confluent_kafka.Producer``; ``flush`` raises if a delivery failed."""

    def __init__(self, settings: KafkaSettings, *, flush_timeout_s: float = 30.0) -> None:
        ck = _confluent()
        self._flush_timeout_s = flush_timeout_s
        self._errors: list[str] = []
        conf = _common(settings) | {
            "client.id": f"{settings.client_id}-producer",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": settings.linger_ms,
            "batch.size": settings.batch_size,
            "message.max.bytes": settings.max_request_size,
            "compression.type": settings.compression_type,
        }
        self._producer: Any = ck.Producer(conf)

    def _delivered(self, error: Any, message: Any) -> None:
        if error is not None:
            self._errors.append(str(error))

    def send(self, message: OutboundMessage) -> None:
        """Queue one record; waits only when the local queue is full."""
        while True:
            try:
                extra = {} if message.partition is None else {"partition": message.partition}
                self._producer.produce(
                    message.topic, value=message.value, key=message.key,
                    headers=list(message.headers), on_delivery=self._delivered, **extra,
                )  # fmt: skip
                break
            except BufferError:
                self._producer.poll(0.05)  # the queue is full: let deliveries drain it
        self._producer.poll(0)

    def flush(self) -> None:
        """Wait for every queued record.

        Raises:
            BrokerError: a record was not delivered, or the flush timed out.
        """
        remaining = self._producer.flush(self._flush_timeout_s)
        if remaining:
            msg = f"{remaining} record(s) still undelivered after {self._flush_timeout_s}s"
            raise BrokerError(msg)
        raise_delivery_errors(self._errors)

    def close(self) -> None:
        """Deliver what is queued, then release the client.

        librdkafka keeps reconnecting until the producer object is destroyed.
        """
        self._producer.flush(self._flush_timeout_s)
        self._producer = None
