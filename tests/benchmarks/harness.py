"""Shared pieces of the speed benchmarks: a model, records, raw-consume and service runs."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamvae.config import KafkaSettings, ServeSettings, TrackingSettings
from streamvae.service import ScoringService
from streamvae.service.runner import poll_limit as service_poll_limit
from streamvae.stream.admin import ensure_topics
from streamvae.types import RunStats
from tests.factories import feature_message, make_normal

D = 30  # 30 floats: ~300-byte JSON messages, as in the platform measurements


def out_dir() -> Path:
    path = Path(os.environ.get("BENCH_DIR", "bench-results"))
    path.mkdir(exist_ok=True)
    return path


def write_json(name: str, values: object) -> None:
    (out_dir() / name).write_text(json.dumps(values, indent=2, default=float))


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def records(n: int, seed: int = 0, ts_ms: int | None = None, *, named: bool = False) -> list[dict]:
    """``n`` normal records; by default ~300-byte JSON (30 floats as a list, 6 decimals) as in
    the platform measurements, with ``named`` the features as a ``name -> value`` object."""
    ts = ts_ms if ts_ms is not None else time.time_ns() // 1_000_000
    rows = make_normal(n, D, seed).astype(np.float64).round(6)
    return [feature_message(r, rid=f"r{i}", ts=ts, as_list=not named) for i, r in enumerate(rows)]


def producer(bootstrap: str, linger_ms: int = 20) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=linger_ms, batch_size=1_048_576,
        max_request_size=33_554_432,
    )  # fmt: skip


def fill_topic(bootstrap: str, topic: str, values: list[bytes]) -> None:
    settings = KafkaSettings(bootstrap_servers=bootstrap)
    ensure_topics(settings, (topic,), partitions=1)
    p = producer(bootstrap)
    for value in values:
        p.send(topic, value)
    p.flush()
    p.close()


def poll_limit(records_per_message: int) -> int:
    """Messages per poll, as the service asks for them with its default settings."""
    settings = ServeSettings()
    return service_poll_limit(
        records_per_message,
        max_poll_records=settings.kafka.max_poll_records,
        target_batch_records=settings.target_batch_records,
    )


def raw_consume_rate(
    bootstrap: str, topic: str, n_messages: int, records_per_message: int
) -> float:
    """Records/s of a bare kafka-python consumer reading the topic (no decoding).

    Polls as many messages at a time as the service does; the clock runs from the first
    poll that returns records to the last, as the service's ``active_s`` does.
    """
    limit = poll_limit(records_per_message)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=2000,
        fetch_max_wait_ms=50, max_partition_fetch_bytes=8_388_608, fetch_max_bytes=52_428_800,
    )  # fmt: skip
    consumer.assign([TopicPartition(topic, 0)])
    consumer.seek_to_beginning()
    seen, first = 0, None
    while seen < n_messages:
        for batch in consumer.poll(timeout_ms=200, max_records=limit).values():
            first = first or time.perf_counter()
            seen += len(batch)
    elapsed = time.perf_counter() - (first or time.perf_counter())
    consumer.close()
    return seen * records_per_message / elapsed


def raw_confluent_rate(
    bootstrap: str, topic: str, n_messages: int, records_per_message: int
) -> float:
    """Records/s of a bare confluent-kafka consumer reading the topic (no decoding).

    Same poll size and clock as :func:`raw_consume_rate`.
    """
    import confluent_kafka as ck  # optional client

    limit = poll_limit(records_per_message)
    conf = {"bootstrap.servers": bootstrap, "group.id": f"raw-{time.time_ns()}",
            "enable.auto.commit": False, "fetch.wait.max.ms": 50}  # fmt: skip
    consumer = ck.Consumer(conf)
    consumer.assign([ck.TopicPartition(topic, 0, ck.OFFSET_BEGINNING)])
    seen, first = 0, None
    while seen < n_messages:
        batch = consumer.consume(num_messages=limit, timeout=0.2)
        if batch:
            first = first or time.perf_counter()
            seen += len(batch)
    elapsed = time.perf_counter() - (first or time.perf_counter())
    consumer.close()
    return seen * records_per_message / elapsed


def serve_settings(
    bootstrap: str,
    model_dir: Path,
    work: Path,
    topic: str,
    group: str,
    client: str = "kafka-python",
) -> ServeSettings:
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap, client=client, input_topic=topic, alert_topic=f"{topic}-alerts",
        dead_letter_topic=f"{topic}-dlq", group_id=group, session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )  # fmt: skip
    ensure_topics(kafka, (kafka.alert_topic, kafka.dead_letter_topic))
    return ServeSettings(
        model_uri=str(model_dir), kafka=kafka, tracking=TrackingSettings(work_dir=str(work)),
        metrics_port=0, poll_timeout_ms=50,
    )  # fmt: skip


def service_run(settings: ServeSettings, n_messages: int) -> RunStats:
    with ScoringService(settings) as service:
        return service.run(max_messages=n_messages)


def encode_all(values: list[dict], per_message: int) -> list[bytes]:
    if per_message == 1:
        return [orjson.dumps(v) for v in values]
    return [orjson.dumps(values[i : i + per_message]) for i in range(0, len(values), per_message)]
