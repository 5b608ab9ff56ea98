"""KafkaMessageSource: a kafka-python consumer with manual, at-least-once commits."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streamvae.config import KafkaSettings
from streamvae.errors import BrokerError
from streamvae.types import InboundMessage

logger = logging.getLogger(__name__)

Offsets = Mapping[tuple[str, int], int]
# exactly-once: commits the offsets inside the producer's transaction (offsets, group metadata)
Committer = Callable[[Mapping[TopicPartition, OffsetAndMetadata], Any], None]


def security_options(settings: KafkaSettings) -> dict[str, object]:
    """Client options shared by consumer, producer and admin (TLS / SASL, bootstrap timeout).

    ``bootstrap_timeout_ms`` bounds how long a client tries to reach the cluster at start-up,
    so a wrong address or a dead broker is one error line within ``connect_timeout_ms``.
    """
    options: dict[str, object] = {
        "security_protocol": settings.security_protocol,
        "bootstrap_timeout_ms": settings.connect_timeout_ms,
    }
    if settings.sasl_mechanism:
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_secret()
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_check_hostname"] = settings.ssl_check_hostname
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(settings, key) is not None:
                options[key] = getattr(settings, key)
        if settings.ssl_password is not None:
            options["ssl_password"] = settings.ssl_password.get_secret_value()
    return options


def compression(settings: KafkaSettings) -> str | None:
    """kafka-python's ``compression_type`` for the outputs (``None``: uncompressed)."""
    return None if settings.compression_type == "none" else settings.compression_type


def missing_codecs() -> list[str]:
    """Compression codecs kafka-python cannot decompress here (their libraries are missing).

    Kafka producers compress with gzip, snappy, lz4 or zstd; a batch in a codec the consumer
    cannot read makes every ``poll`` fail on it, so the service refuses to start instead.
    """
    from kafka import codec

    checks = {"snappy": codec.has_snappy, "lz4": codec.has_lz4, "zstd": codec.has_zstd}
    return [name for name, present in checks.items() if not present()]


class _CommitOnRevoke(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Commits the handled offsets of partitions before they move to another member.

    kafka-python 3 runs rebalance listeners on its IO thread, where a blocking consumer
    call (a synchronous commit) raises and the error comes out of ``poll``: the commit is
    awaited there instead. ``before_revoke`` (flushing the outputs) blocks on the producer's
    own client, which that thread may wait for.
    """

    def __init__(self, source: KafkaMessageSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        offsets = self._source.take_revoked(revoked)
        if offsets:
            try:
                await self._source.commit_offsets_async(offsets)
            except KafkaError as exc:  # at-least-once: the next owner re-reads them
                logger.warning(
                    "offsets of revoked partitions not committed (%s): their next owner "
                    "re-reads from the last commit", exc,
                )  # fmt: skip
        self._source.log_revoked(revoked)

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        # evicted from the group: the partitions are someone else's, a commit would fail
        self._source.take_revoked(lost, commit=False)
        logger.warning(
            "partitions lost (evicted from the group) partitions=%s: their next owner "
            "re-reads from the last commit", sorted((t.topic, t.partition) for t in lost),
        )  # fmt: skip

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        parts = sorted((tp.topic, tp.partition) for tp in assigned)
        logger.info("partitions assigned partitions=%s", parts)
        self._source.on_assigned(list(assigned))


class KafkaMessageSource:
    """Polls records and commits only offsets the caller marked as processed.

    ``mark_processed`` is called after the outputs of those records were flushed; ``commit``
    sends the marked offsets. When partitions are revoked in a rebalance, their marked
    offsets are committed first, so the next owner resumes exactly after them.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topics: tuple[str, ...],
        *,
        on_assignment: Callable[[list[tuple[str, int]]], None] | None = None,
        before_revoke: Callable[[], None] | None = None,
        committer: Committer | None = None,
    ) -> None:
        self._pending: dict[TopicPartition, OffsetAndMetadata] = {}
        self._committer = committer
        self._next: dict[TopicPartition, int] = {}
        self._on_assignment = on_assignment
        self._before_revoke = before_revoke
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=settings.bootstrap_servers.split(","),
                client_id=settings.client_id,
                group_id=settings.group_id,
                enable_auto_commit=False,
                auto_offset_reset=settings.auto_offset_reset,
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=settings.heartbeat_interval_ms,
                max_poll_records=settings.max_poll_records,
                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                fetch_max_bytes=settings.fetch_max_bytes,
                max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
                isolation_level=settings.isolation_level(),
                **security_options(settings),
            )
        except KafkaError as exc:
            msg = f"cannot connect to Kafka at {settings.bootstrap_servers!r}: {exc}"
            raise BrokerError(msg) from exc
        self._consumer.subscribe(list(topics), listener=_CommitOnRevoke(self))

    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[InboundMessage]:
        """Fetch up to ``max_records`` records (blocks at most ``timeout_ms``)."""
        batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        out: list[InboundMessage] = []
        new = tuple.__new__  # InboundMessage without its Python-level __new__: once per record
        for tp, records in batches.items():
            topic, partition = tp.topic, tp.partition
            out += [
                new(InboundMessage, (topic, partition, r.offset, r.value, r.key, r.timestamp,
                                     tuple(r.headers) if r.headers else ()))
                for r in records
            ]  # fmt: skip
            self._next[tp] = records[-1].offset + 1
        return out

    def mark_processed(self, offsets: Offsets) -> None:
        """Record that every record before ``offsets[(topic, partition)]`` is done."""
        for (topic, partition), offset in offsets.items():
            self._pending[TopicPartition(topic, partition)] = OffsetAndMetadata(offset, "", -1)

    def commit(self) -> None:
        """Commit the marked offsets synchronously (no-op when nothing is marked)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        self._commit(pending)

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if self._committer is not None:
            self._committer(offsets, self._consumer.group_metadata())
        else:
            self._consumer.commit(offsets=offsets)

    def take_revoked(
        self, revoked: set[TopicPartition], *, commit: bool = True
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Partitions are being taken away: the marked offsets to commit for them.

        ``before_revoke`` runs first, so the caller can flush and mark what it handled.
        ``commit=False`` (partitions lost): their offsets are dropped.

        Exactly-once: the open transaction holds the outputs of every partition, so it is
        committed here with all the marked offsets (on the producer's client, which this
        thread may wait for), lost or not, as before the listener moved to the IO thread;
        a failure there comes out of ``poll`` and stops the replica without committing.
        """
        if self._before_revoke is not None:
            self._before_revoke()
        for tp in revoked:
            self._next.pop(tp, None)
        if self._committer is not None:
            offsets, self._pending = self._pending, {}
            self._commit(offsets)
            return {}
        offsets = {tp: self._pending.pop(tp) for tp in revoked if tp in self._pending}
        return offsets if commit else {}

    async def commit_offsets_async(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit ``offsets`` from a coroutine on the client's IO thread (the listener's).

        Raises:
            KafkaError: the commit failed.
        """
        await self._consumer.commit_async(offsets=offsets)

    @staticmethod
    def log_revoked(revoked: set[TopicPartition]) -> None:
        """One line per revocation (the chaos harness and operators read it)."""
        logger.info(
            "partitions revoked partitions=%s", sorted((t.topic, t.partition) for t in revoked)
        )

    def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Forward an assignment to the optional observer."""
        if self._on_assignment is not None:
            self._on_assignment([(tp.topic, tp.partition) for tp in assigned])

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the high watermark per partition fetched so far.

        The high watermark returned with fetched records is used, not ListOffsets, which
        some Kafka-protocol brokers (Tansu) answer wrongly.
        """
        lags: dict[tuple[str, int], int] = {}
        for tp, next_offset in self._next.items():
            high = self._consumer.highwater(tp)
            if high is not None:
                lags[(tp.topic, tp.partition)] = max(0, high - next_offset)
        return lags

    def close(self) -> None:
        """Leave the group (commits nothing that was not marked and committed)."""
        self._consumer.close(autocommit=False)
