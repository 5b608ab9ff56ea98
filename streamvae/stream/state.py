"""Read a state topic's partitions from the beginning to their end (no consumer group)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

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
) -> list[bytes | None]:
    """Every value on ``topic``'s ``partitions``, oldest first per partition.

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
            **security_options(settings),
        )
    except KafkaError as exc:
        msg = f"cannot connect to Kafka at {settings.bootstrap_servers!r}: {exc}"
        raise BrokerError(msg) from exc
    values: list[bytes | None] = []
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
                values.extend(r.value for r in records)
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


def ensure_state_topic(settings: KafkaSettings, state_topic: str, input_topic: str) -> int:
    """Create ``state_topic`` (compacted) with as many partitions as ``input_topic``, if absent.

    Returns the state topic's partition count (0 when neither topic exists yet: the state
    topic is then left for the operator or a later start to create).

    Raises:
        BrokerError: the broker cannot be reached or refuses.
    """
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers.split(","),
            client_id=f"{settings.client_id}-admin",
            **security_options(settings),
        )
    except KafkaError as exc:
        msg = f"cannot connect to Kafka at {settings.bootstrap_servers!r}: {exc}"
        raise BrokerError(msg) from exc
    parts = 0
    try:
        if state_topic not in set(admin.list_topics()):
            described = admin.describe_topics([input_topic])
            parts = len(described[0].get("partitions", [])) if described else 0
            if parts:
                config = {"cleanup.policy": "compact"}
                admin.create_topics([NewTopic(state_topic, parts, 1, topic_configs=config)])
                logger.info("created state topic %s partitions=%d", state_topic, parts)
        else:
            described = admin.describe_topics([state_topic])
            parts = len(described[0].get("partitions", [])) if described else 0
    except TopicAlreadyExistsError:
        pass  # created concurrently by another consumer
    except KafkaError as exc:
        msg = f"cannot create state topic {state_topic!r}: {exc}"
        raise BrokerError(msg) from exc
    finally:
        admin.close()
    return parts
