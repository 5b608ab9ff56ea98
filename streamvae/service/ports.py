"""The protocols the service depends on; Kafka adapters and in-memory fakes implement them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from streamvae.types import InboundMessage, OutboundMessage


class MessageSource(Protocol):
    """Where records come from (a Kafka consumer group in production)."""

    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[InboundMessage]:
        """Up to ``max_records`` records; waits at most ``timeout_ms`` when none are ready."""
        ...

    def mark_processed(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Everything before ``offsets[(topic, partition)]`` is done and its outputs flushed."""
        ...

    def commit(self) -> None:
        """Commit what was marked."""
        ...

    def lag(self) -> dict[tuple[str, int], int]:
        """Records behind the end of each partition."""
        ...


class MessageSink(Protocol):
    """Where alerts, scores and dead letters go."""

    def send(self, message: OutboundMessage) -> None:
        """Queue one record."""
        ...

    def flush(self) -> None:
        """Block until every queued record is delivered; raise if one was not."""
        ...
