"""A rebalance commits what the consumer handled before its partitions move (kafka-python).

kafka-python 3 calls the rebalance listener on its IO thread, where a blocking consumer
call (a synchronous commit) raises and the error comes out of ``poll``: the service
crashed on a rebalance whenever it held handled-but-uncommitted offsets. The listener now
awaits the commit on that thread. This test holds such offsets, makes a second member
join, and checks that the first one polls on and its offsets are committed.
"""

from __future__ import annotations

import threading
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamvae.stream.admin import ensure_topics
from streamvae.stream.consumer import KafkaMessageSource
from tests.integration.kafka_helpers import Topics, kafka_settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


def _poll_until(source: KafkaMessageSource, done, timeout_s: float = 30.0) -> list:
    deadline, got = time.monotonic() + timeout_s, []
    while not done(got):
        assert time.monotonic() < deadline, "timed out polling"
        got += source.poll(200)
    return got


def test_offsets_handled_before_a_rebalance_are_committed_and_poll_goes_on(broker):
    topics = Topics.unique()
    settings = kafka_settings(broker, topics)
    ensure_topics(settings, (topics.input,), partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker)
    for i in range(40):
        producer.send(topics.input, value=b"x", partition=i % 2)
    producer.flush()
    producer.close()

    flushed = []
    first = KafkaMessageSource(settings, (topics.input,), before_revoke=lambda: flushed.append(1))
    got = _poll_until(first, lambda got: len(got) >= 40)
    handled = {(m.topic, m.partition): m.offset + 1 for m in got}
    first.mark_processed(handled)  # handled, outputs flushed, not committed yet

    stop = threading.Event()

    def second_member() -> None:
        other = KafkaMessageSource(settings, (topics.input,))
        while not stop.is_set():
            other.poll(200)
        other.close()

    joiner = threading.Thread(target=second_member, daemon=True)
    joiner.start()
    try:
        deadline = time.monotonic() + 30
        while not flushed:  # the rebalance reaches the first member through its poll
            assert time.monotonic() < deadline, "no rebalance reached the first member"
            first.poll(200)  # raised KafkaError("User rebalance callback throws an error")
        for _ in range(10):
            first.poll(100)
    finally:
        stop.set()
        joiner.join(timeout=30)
    first.close()

    check = KafkaConsumer(bootstrap_servers=broker, group_id=topics.group)
    committed = {
        (topics.input, p): check.committed(TopicPartition(topics.input, p)) for p in (0, 1)
    }
    check.close()
    assert committed == handled, "the revoked partitions' handled offsets were committed"
