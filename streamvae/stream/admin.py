"""Topic management (create if absent)."""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from streamvae.config import KafkaSettings
from streamvae.errors import BrokerError
from streamvae.stream.consumer import security_options


def ensure_topics(
    settings: KafkaSettings, topics: tuple[str, ...], *, partitions: int = 1, replication: int = 1
) -> None:
    """Create the missing ``topics`` (existing ones are left as they are).

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
