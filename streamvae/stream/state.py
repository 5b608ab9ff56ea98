"""Read a state topic's partitions from the beginning to their end (no consumer group)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from streamvae.config import KafkaSettings
from streamvae.errors import BrokerError
from streamvae.stream.consumer import security_options

logger = logging.getLogger(__name__)


def read_state(
    settings: KafkaSettings,
    topic: str,
    partitions: Iterable[int],
    *,
    timeout_s: float = 30.0,
    idle_polls: int = 3,
) -> list[tuple[bytes | None, bytes | None]]:
    """Every ``(key, value)`` on ``topic``'s ``partitions``, oldest first per partition.

    A ``None`` value is a tombstone: the key's earlier records no longer count.

    Reads until each partition's position reaches the high watermark returned with the
    fetches (list-offsets answers are not trusted: some brokers get them wrong), or until
    ``idle_polls`` polls in a row return nothing for partitions whose end is unknown (an
    empty or missing partition), or ``timeout_s``.

    Raises:
        BrokerError: the broker cannot be reached.
    """
    wanted = [TopicPartition(topic, p) for p in sorted(set(partitions))]
    if not wanted:
        return []
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers.split(","),
            client_id=f"{settings.client_id}-state",
            enable_auto_commit=False,
            group_id=None,
            isolation_level=settings.isolation_level(),
            **security_options(settings),
        )
    except KafkaError as exc:
        msg = f"cannot connect to Kafka at {settings.bootstrap_servers!r}: {exc}"
        raise BrokerError(msg) from exc
    values: list[tuple[bytes | None, bytes | None]] = []
    try:
        known = set(consumer.partitions_for_topic(topic) or ())
        present = [tp for tp in wanted if tp.partition in known]
        if not present:
            return []
        consumer.assign(present)
        consumer.seek_to_beginning(*present)
        deadline = time.monotonic() + timeout_s
        idle = 0
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200)
            for records in batch.values():
                values.extend((r.key, r.value) for r in records)
            idle = 0 if batch else idle + 1
            ends = {tp: consumer.highwater(tp) for tp in present}
            done = all(end is not None and consumer.position(tp) >= end for tp, end in ends.items())
            if done or (
                idle >= idle_polls
                and all(e in (None, 0) or consumer.position(tp) >= e for tp, e in ends.items())
            ):
                break
        else:
            logger.warning("state topic %s not read to its end within %.0f s", topic, timeout_s)
    finally:
        consumer.close()
    return values
