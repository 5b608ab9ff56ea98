"""Helpers for tests against the real broker: unique topics, a service in a thread."""

from __future__ import annotations

import sys
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from streamvae.config import KafkaSettings, ServeSettings, TrackingSettings
from streamvae.service import ScoringService
from streamvae.stream.admin import ensure_topics
from streamvae.stream.tools import read_topic
from streamvae.types import InboundMessage, RunStats


@dataclass(frozen=True)
class Topics:
    input: str
    alerts: str
    dead: str
    scores: str
    group: str

    @classmethod
    def unique(cls) -> Topics:
        tag = uuid.uuid4().hex[:8]
        return cls(f"in-{tag}", f"alerts-{tag}", f"dlq-{tag}", f"scores-{tag}", f"group-{tag}")


def kafka_settings(bootstrap: str, topics: Topics, client: str = "kafka-python") -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=bootstrap,
        client=client,
        input_topic=topics.input,
        alert_topic=topics.alerts,
        dead_letter_topic=topics.dead,
        score_topic=topics.scores,
        group_id=topics.group,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )


def serve_settings(
    bootstrap: str,
    topics: Topics,
    model_dir: Path,
    work: Path,
    partitions: int = 2,
    client: str = "kafka-python",
) -> ServeSettings:
    kafka = kafka_settings(bootstrap, topics, client)
    ensure_topics(
        kafka, (topics.input, topics.alerts, topics.dead, topics.scores), partitions=partitions
    )
    return ServeSettings(
        model_uri=str(model_dir),
        kafka=kafka,
        tracking=TrackingSettings(work_dir=str(work)),
        metrics_port=0,
        poll_timeout_ms=50,
    )


def serve_cmd(
    bootstrap: str, topics: Topics, model_dir: Path, work: Path, **overrides: object
) -> list[str]:
    """``streamvae serve`` as a subprocess command on ``topics`` (``--set`` ``overrides``)."""
    settings: dict[str, object] = {
        "kafka.input_topic": topics.input,
        "kafka.alert_topic": topics.alerts,
        "kafka.dead_letter_topic": topics.dead,
        "kafka.score_topic": topics.scores,
        "kafka.group_id": topics.group,
        "kafka.session_timeout_ms": 2000,
        "kafka.heartbeat_interval_ms": 500,
        "tracking.work_dir": work,
    } | overrides
    cmd = [sys.executable, "-m", "streamvae", "serve", "--model-uri", str(model_dir)]
    cmd += ["--bootstrap-servers", bootstrap, "--metrics-port", "0"]
    for key, value in settings.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd


@dataclass
class RunningService:
    service: ScoringService
    thread: threading.Thread
    stats: list[RunStats] = field(default_factory=list)


@contextmanager
def running_service(
    settings: ServeSettings, max_messages: int | None = None, idle_timeout_s: float | None = None
):
    with ScoringService(settings) as service:
        holder = RunningService(service, threading.Thread(target=lambda: None))
        holder.thread = threading.Thread(
            target=lambda: holder.stats.append(service.run(max_messages, idle_timeout_s)),
            daemon=True,
        )
        holder.thread.start()
        assert service.assigned.wait(timeout=30), "consumer never got partitions"
        try:
            yield holder
        finally:
            service.stop()
            holder.thread.join(timeout=30)


def read_json(
    bootstrap: str, topic: str, expected: int, partitions: int = 2, timeout_s: float = 30
) -> list[dict]:
    return [
        orjson.loads(m.value) for m in read_raw(bootstrap, topic, expected, partitions, timeout_s)
    ]


def read_raw(
    bootstrap: str, topic: str, expected: int, partitions: int = 2, timeout_s: float = 30
) -> list[InboundMessage]:
    return read_topic(
        bootstrap, topic, partitions=partitions, expected=expected, timeout_s=timeout_s
    )
