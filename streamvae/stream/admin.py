"""Topic management (create if absent)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streamvae.config import KafkaSettings
from streamvae.errors import BrokerError
from streamvae.stream.consumer import security_options

logger = logging.getLogger(__name__)


def admin_client(settings: KafkaSettings) -> KafkaAdminClient:
    """An admin client for ``settings``' cluster.

    The client's own start-up complaints ("Bootstrap ... not ready", "Bootstrap failed") stay
    off the log below DEBUG: an unreachable cluster is reported once, by the ``BrokerError``.

    Raises:
        BrokerError: the broker cannot be reached.
    """
    try:
        with _quiet_client_logs():
            return KafkaAdminClient(
                bootstrap_servers=settings.bootstrap_servers.split(","),
                client_id=f"{settings.client_id}-admin",
                **security_options(settings),
            )
    except KafkaError as exc:
        msg = f"cannot connect to Kafka at {settings.bootstrap_servers!r}: {exc}"
        raise BrokerError(msg) from exc


@contextmanager
def _quiet_client_logs() -> Iterator[None]:
    """Raise kafka-python's loggers to CRITICAL for the block (unless DEBUG is on)."""
    client_logger = logging.getLogger("kafka")
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    level = client_logger.level
    client_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        client_logger.setLevel(level)


def check_reachable(settings: KafkaSettings) -> None:
    """Fail fast, with one line, when no bootstrap server answers within the connect timeout.

    Raises:
        BrokerError: no broker reachable (after at most ``kafka.connect_timeout_ms``).
    """
    admin_client(settings).close()


def ensure_topics(
    settings: KafkaSettings, topics: tuple[str, ...], *, partitions: int = 1, replication: int = 1
) -> None:
    """Create the missing ``topics`` (existing ones are left as they are).

    Raises:
        BrokerError: the broker cannot be reached or refuses.
    """
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, partitions, replication) for t in topics if t not in existing]
        if missing:
            admin.create_topics(missing)
    except TopicAlreadyExistsError:
        pass  # created concurrently by another client: what we wanted
    except KafkaError as exc:
        msg = f"cannot create topics {list(topics)}: {exc}"
        raise BrokerError(msg) from exc
    finally:
        admin.close()


def missing_topics(settings: KafkaSettings, topics: tuple[str, ...]) -> list[str]:
    """Which of ``topics`` the cluster does not have (in the order given).

    Raises:
        BrokerError: the broker cannot be reached or refuses to list topics.
    """
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
    except KafkaError as exc:
        msg = f"cannot list the topics of {settings.bootstrap_servers!r}: {exc}"
        raise BrokerError(msg) from exc
    finally:
        admin.close()
    return [t for t in topics if t not in existing]


def ensure_state_topic(settings: KafkaSettings, state_topic: str, input_topic: str) -> int:
    """Create ``state_topic`` (compacted) with as many partitions as ``input_topic``, if absent.

    Returns the state topic's partition count (0 when neither topic exists yet: the state
    topic is then left for the operator or a later start to create).

    Raises:
        BrokerError: the broker cannot be reached or refuses.
    """
    admin = admin_client(settings)
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
