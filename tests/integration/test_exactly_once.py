"""Exactly-once delivery (Kafka transactions) on the embedded broker: the commit path.

What is proven here: alerts, scores and the input offsets go out in transactions; a
read_committed reader sees every alert; a new group member finds nothing left to consume
(the offsets were committed through the transactions); a kill -9 loses nothing.

What cannot be proven here: that aborted outputs stay invisible. Tansu 0.6 shows aborted
records to read_committed consumers (``test_tansu_shows_aborted_records`` measures it), so
the duplicate-freedom of exactly-once is only claimed for Apache Kafka (docs/operations.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamvae.config import KafkaSettings
from streamvae.stream.admin import ensure_topics
from streamvae.stream.tools import produce_all
from tests.factories import encode, feature_message, make_anomalies, make_normal
from tests.integration.kafka_helpers import Topics, running_service, serve_cmd, serve_settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]


def read_committed(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    consumer.assign([TopicPartition(topic, p) for p in range(2)])
    consumer.seek_to_beginning()
    seen: list = []
    deadline = time.monotonic() + timeout_s
    while len(seen) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            seen.extend(records)
    consumer.close()
    return seen


def records(n: int, odd: int, seed: int = 0) -> tuple[list[bytes], set[str]]:
    values = [
        encode(feature_message(r, rid=f"n{i}")) for i, r in enumerate(make_normal(n, seed=seed))
    ]
    values += [
        encode(feature_message(r * 3, rid=f"a{i}"))
        for i, r in enumerate(make_anomalies(odd, seed=seed + 1))
    ]
    return values, {f"a{i}" for i in range(odd)}


def eos(settings):
    kafka = settings.kafka.model_copy(
        update={"delivery": "exactly_once", "transactional_id": f"sv-{settings.kafka.group_id}"}
    )
    return settings.model_copy(update={"kafka": kafka})


def test_alerts_and_offsets_commit_in_transactions(broker, bundle_dir, tmp_path):
    topics = Topics.unique()
    settings = eos(serve_settings(broker, topics, bundle_dir, tmp_path))
    values, odd = records(300, 20)
    with running_service(settings) as running:
        produce_all(broker, topics.input, values)
        scores = read_committed(broker, topics.scores, expected=len(values))
        alerts = read_committed(broker, topics.alerts, expected=len(odd))
        sink = running.service.runner.sink
        time.sleep(1.5)
        assert sink.commits >= 1 and sink.aborts == 0
    assert len(scores) == len(values)
    import orjson

    assert odd <= {orjson.loads(r.value)["id"] for r in alerts}
    # the offsets went in with the transactions: the next member has nothing to do
    with running_service(settings) as again:
        time.sleep(2.0)
    assert again.stats[0].messages == 0


def test_kill_9_under_exactly_once_loses_nothing(broker, bundle_dir, tmp_path):
    topics = Topics.unique()
    serve_settings(broker, topics, bundle_dir, tmp_path)
    values, _ = records(3000, 0, seed=3)
    produce_all(broker, topics.input, values)
    cmd = serve_cmd(broker, topics, bundle_dir, tmp_path, **{
        "kafka.delivery": "exactly_once", "kafka.transactional_id": f"sv-{topics.group}",
    })  # fmt: skip
    first = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    assert len(read_committed(broker, topics.scores, expected=300, timeout_s=60)) >= 300
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    # the restarted member re-uses the transactional id: init_transactions fences the dead one
    second = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        scores = read_committed(broker, topics.scores, expected=10**9, timeout_s=25)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    import orjson

    ids = {orjson.loads(r.value)["id"] for r in scores}
    assert ids == {f"n{i}" for i in range(3000)}, "every record scored at least once"


def test_tansu_shows_aborted_records_to_read_committed_consumers(broker):
    """The measured broker quirk that keeps exactly-once unproven here.

    If this starts failing, the broker hides aborted records now: extend the tests above to
    assert no duplicates after a kill, and update docs/operations.md.
    """
    topic = Topics.unique().input
    ensure_topics(KafkaSettings(bootstrap_servers=broker), (topic,), partitions=1)
    producer = KafkaProducer(bootstrap_servers=broker, transactional_id=f"probe-{topic}")
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(topic, b"aborted")
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    producer.send(topic, b"committed")
    producer.commit_transaction()
    producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=broker, enable_auto_commit=False, isolation_level="read_committed"
    )
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    seen: list[bytes] = []
    deadline = time.monotonic() + 15
    while b"committed" not in seen and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            seen.extend(r.value for r in batch)
    consumer.close()
    assert b"committed" in seen
    assert b"aborted" in seen, "Tansu now hides aborted records: exactly-once can be tested"
