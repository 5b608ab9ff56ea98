"""What every demo shares: an embedded broker and work directory, its topics, the service.

A demo trains and registers a model in a local tracking store, then serves it from a
background thread against an embedded Kafka-protocol broker and replays data through it.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamvae.config import KafkaSettings, ServeSettings, TrackingSettings
from streamvae.service import ScoringService
from streamvae.stream.admin import ensure_topics
from streamvae.stream.embedded import EmbeddedBroker, free_port
from streamvae.types import RunStats

logger = logging.getLogger(__name__)

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class DemoTopics:
    """The four topics of a demo: input, alerts, scores, dead letters."""

    input: str
    alerts: str
    scores: str
    dead: str

    @classmethod
    def named(cls, prefix: str) -> DemoTopics:
        """``PREFIX``, ``PREFIX-alerts``, ``PREFIX-scores``, ``PREFIX-dead``."""
        return cls(prefix, f"{prefix}-alerts", f"{prefix}-scores", f"{prefix}-dead")


@contextmanager
def embedded(prefix: str, work_dir: Path | None, say: Say) -> Iterator[tuple[str, Path]]:
    """An embedded broker and a work directory (``work_dir``, else a temporary one).

    Yields the broker's bootstrap address and the work directory.
    """
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp, EmbeddedBroker() as broker:
        say(f"embedded Kafka-protocol broker on {broker.bootstrap_servers}")
        yield broker.bootstrap_servers, work_dir or Path(tmp)


def demo_tracking(work: Path, model: str, experiment: str) -> TrackingSettings:
    """A local tracking store in ``work``, registering ``model`` with alias ``champion``."""
    return TrackingSettings(
        work_dir=str(work), registered_model=model, alias="champion", experiment=experiment
    )


def serve_settings(
    bootstrap: str,
    topics: DemoTopics,
    tracking: TrackingSettings,
    *,
    partitions: int,
    **serve: Any,
) -> ServeSettings:
    """Create the topics and return the service's settings for the demo's champion.

    Short consumer-group timings (a demo starts and stops in seconds); ``serve`` overrides
    further ``ServeSettings`` fields.
    """
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap, input_topic=topics.input, alert_topic=topics.alerts,
        dead_letter_topic=topics.dead, score_topic=topics.scores,
        group_id=f"streamvae-{topics.input}", session_timeout_ms=2000, heartbeat_interval_ms=500,
    )  # fmt: skip
    names = (topics.input, topics.alerts, topics.scores, topics.dead)
    ensure_topics(kafka, names, partitions=partitions)
    values: dict[str, Any] = {
        "model_uri": f"models:/{tracking.registered_model}@champion",
        "kafka": kafka,
        "tracking": tracking,
        "metrics_port": free_port(),
        "poll_timeout_ms": 50,
    }
    return ServeSettings(**(values | serve))


@contextmanager
def background_service(settings: ServeSettings) -> Iterator[tuple[ScoringService, list[RunStats]]]:
    """The scoring service running in a thread once it owns partitions; stopped on exit.

    Yields the service and the list its ``RunStats`` is appended to when the run ends.
    """
    with ScoringService(settings) as service:
        stats: list[RunStats] = []
        thread = threading.Thread(target=lambda: stats.append(service.run()), name="scoring")
        thread.start()
        service.assigned.wait(timeout=30)
        try:
            yield service, stats
        finally:
            service.stop()
            thread.join(timeout=30)


def linger(service: ScoringService, seconds: float, say: Say) -> str:
    """Keep ``/metrics`` up ``seconds`` for a look; returns the metrics URL."""
    if seconds > 0:
        say(f"metrics at {service.metrics_url} for {seconds:.0f} s")
        time.sleep(seconds)
    return service.metrics_url
