"""Small producer/reader helpers for replays, the demo and tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamvae.types import InboundMessage, OutboundMessage


def produce_all(
    bootstrap_servers: str,
    topic: str,
    values: Iterable[bytes],
    *,
    key: Callable[[int], bytes | None] = lambda i: None,
) -> int:
    """Send every value to ``topic`` and flush; returns how many were sent."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers, linger_ms=5, max_request_size=33_554_432
    )
    count = 0
    for i, value in enumerate(values):
        producer.send(topic, value=value, key=key(i))
        count += 1
    producer.flush()
    producer.close()
    return count


def produce_messages(bootstrap_servers: str, messages: Iterable[OutboundMessage]) -> int:
    """Send each message (its topic, value, key and headers) and flush; returns how many."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers, linger_ms=5, max_request_size=33_554_432
    )
    count = 0
    for m in messages:
        producer.send(m.topic, m.value, m.key, list(m.headers), m.partition)
        count += 1
    producer.flush()
    producer.close()
    return count


def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    partitions: int,
    expected: int,
    timeout_s: float,
) -> list[InboundMessage]:
    """Read ``topic`` from the beginning (no group) until ``expected`` records or the timeout."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    consumer.seek_to_beginning()
    seen: list[InboundMessage] = []
    deadline = time.monotonic() + timeout_s
    while len(seen) < expected and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=100).items():
            seen.extend(
                InboundMessage(tp.topic, tp.partition, r.offset, r.value, r.key, r.timestamp,
                               tuple(r.headers or ()))
                for r in records
            )  # fmt: skip
    consumer.close()
    return seen
