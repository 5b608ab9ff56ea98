"""KafkaMessageSink: non-blocking sends, one flush per batch that fails loudly."""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from streamvae.config import KafkaSettings
from streamvae.errors import BrokerError
from streamvae.stream.consumer import compression, security_options
from streamvae.types import OutboundMessage

logger = logging.getLogger(__name__)


def raise_delivery_errors(errors: list[Any]) -> None:
    """Raise (and clear) the delivery failures a producer's callbacks collected.

    Raises:
        BrokerError: naming how many records failed and the first reason.
    """
    if errors:
        first, count = errors[0], len(errors)
        errors.clear()
        msg = f"{count} record(s) were not delivered: {first}"
        raise BrokerError(msg)


class KafkaMessageSink:
    """Produces alerts, scores and dead letters; ``flush`` raises if any send failed.

    A failed flush must stop the caller from committing the inputs' offsets: those records
    will be consumed again (at-least-once), never lost.
    """

    def __init__(self, settings: KafkaSettings, *, flush_timeout_s: float = 30.0) -> None:
        self._flush_timeout_s = flush_timeout_s
        self._errors: list[BaseException] = []
        self._unflushed = 0
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=settings.bootstrap_servers.split(","),
                client_id=f"{settings.client_id}-producer",
                acks="all",
                linger_ms=settings.linger_ms,
                batch_size=settings.batch_size,
                max_request_size=settings.max_request_size,
                compression_type=compression(settings),
                **security_options(settings),
            )
        except KafkaError as exc:
            msg = f"cannot connect to Kafka at {settings.bootstrap_servers!r}: {exc}"
            raise BrokerError(msg) from exc

    def send(self, message: OutboundMessage) -> None:
        """Queue one record (returns at once)."""
        future = self._producer.send(
            message.topic,
            value=message.value,
            key=message.key,
            headers=list(message.headers),
            partition=message.partition,
        )
        future.add_errback(self._errors.append)
        self._unflushed += 1

    def flush(self) -> None:
        """Wait until every queued record is acknowledged.

        Raises:
            BrokerError: a record was not delivered.
        """
        if self._unflushed == 0 and not self._errors:
            return  # kafka-python's flush costs milliseconds even with nothing queued
        try:
            self._producer.flush(timeout=self._flush_timeout_s)
        except KafkaError as exc:
            msg = f"producer flush failed: {exc}"
            raise BrokerError(msg) from exc
        self._unflushed = 0
        raise_delivery_errors(self._errors)

    def close(self) -> None:
        """Flush what is queued and close."""
        self._producer.close(timeout=self._flush_timeout_s)
