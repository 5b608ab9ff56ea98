"""Exactly-once delivery: outputs and input offsets committed in one Kafka transaction.

The sink opens a transaction at the first send after a commit. At a checkpoint the runner
flushes (every output acknowledged, still uncommitted), then the consumer hands the offsets it
would commit to ``commit_offsets``, which adds them to the transaction
(``send_offsets_to_transaction`` with the consumer's group metadata: KIP-447 fencing of a
zombie member) and commits. Readers with ``isolation.level=read_committed`` then see each
input's alerts, scores, dead letters and KPI state exactly once: a crash before the commit
aborts the transaction (its outputs are never shown to them) and the inputs, whose offsets
were not committed either, are consumed again.

Needs a broker that implements transactions fully (Apache Kafka >= 2.5). Tansu 0.6 accepts
them and commits offsets through them, but shows aborted records to read_committed consumers,
so exactly-once cannot be proven on it (docs/operations.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streamvae.config import KafkaSettings
from streamvae.errors import BrokerError
from streamvae.stream.consumer import compression, security_options
from streamvae.stream.producer import raise_delivery_errors
from streamvae.types import OutboundMessage

logger = logging.getLogger(__name__)


class TransactionalKafkaSink:
    """A MessageSink whose outputs become visible only with the offsets of their inputs."""

    def __init__(self, settings: KafkaSettings, *, flush_timeout_s: float = 30.0) -> None:
        self._flush_timeout_s = flush_timeout_s
        self._errors: list[BaseException] = []
        self._open = False
        self.transactional_id = settings.resolved_transactional_id()
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=settings.bootstrap_servers.split(","),
                client_id=f"{settings.client_id}-producer",
                transactional_id=self.transactional_id,
                transaction_timeout_ms=settings.transaction_timeout_ms,
                enable_idempotence=True,
                acks="all",
                linger_ms=settings.linger_ms,
                batch_size=settings.batch_size,
                max_request_size=settings.max_request_size,
                compression_type=compression(settings),
                **security_options(settings),
            )
            # fences an older producer with the same id and aborts what it left open
            self._producer.init_transactions()
        except KafkaError as exc:
            msg = f"cannot start a transactional producer at {settings.bootstrap_servers!r}: {exc}"
            raise BrokerError(msg) from exc
        self.commits = 0
        self.aborts = 0

    def _begin(self) -> None:
        if not self._open:
            self._producer.begin_transaction()
            self._open = True

    def send(self, message: OutboundMessage) -> None:
        """Queue one record in the open transaction (opening one if needed)."""
        self._begin()
        future = self._producer.send(
            message.topic,
            value=message.value,
            key=message.key,
            headers=list(message.headers),
            partition=message.partition,
        )
        future.add_errback(self._errors.append)

    def flush(self) -> None:
        """Wait until every queued record is acknowledged (still uncommitted).

        Raises:
            BrokerError: a record was not delivered; the transaction is aborted.
        """
        if not self._open:
            return
        try:
            self._producer.flush(timeout=self._flush_timeout_s)
            raise_delivery_errors(self._errors)
        except (KafkaError, BrokerError) as exc:
            self._abort()
            msg = f"transactional flush failed, transaction aborted: {exc}"
            raise BrokerError(msg) from exc

    def commit_offsets(
        self, offsets: Mapping[TopicPartition, OffsetAndMetadata], group_metadata: Any
    ) -> None:
        """Add the inputs' offsets to the transaction and commit it.

        Raises:
            BrokerError: the commit failed; the transaction is aborted (its outputs stay
                invisible to read_committed readers and the inputs are consumed again).
        """
        if not offsets and not self._open:
            return
        try:
            self._begin()
            if offsets:
                self._producer.send_offsets_to_transaction(dict(offsets), group_metadata)
            self._producer.commit_transaction()
        except KafkaError as exc:
            self._abort()
            msg = f"transaction commit failed, transaction aborted: {exc}"
            raise BrokerError(msg) from exc
        self._open = False
        self.commits += 1

    def _abort(self) -> None:
        if not self._open:
            return
        self._open = False
        self.aborts += 1
        try:
            self._producer.abort_transaction()
        except KafkaError:  # fatal (e.g. fenced): the producer is unusable; crash follows
            logger.exception("abort_transaction failed")

    def close(self) -> None:
        """Abort an open (uncommitted) transaction and close."""
        self._abort()
        self._producer.close(timeout=self._flush_timeout_s)
