"""The revoke listener: what it commits when partitions move, drops when they are lost.

kafka-python 3 awaits the listener on its IO thread (the broker-backed reproduction is
``tests/integration/test_rebalance_commit.py``); here the source's consumer is a fake, so
each rule is checked alone.
"""

from __future__ import annotations

import asyncio
import logging

from kafka import TopicPartition
from kafka.errors import CommitFailedError
from kafka.structs import OffsetAndMetadata

from streamvae.stream.consumer import KafkaMessageSource, _CommitOnRevoke

A, B = TopicPartition("in", 0), TopicPartition("in", 1)


class _Consumer:
    def __init__(self, fail: bool = False) -> None:
        self.committed: list[dict] = []
        self.fail = fail

    async def commit_async(self, offsets):
        if self.fail:
            raise CommitFailedError("generation moved")
        self.committed.append(offsets)

    def group_metadata(self) -> str:
        return "group-metadata"


def _source(consumer: _Consumer, before_revoke=None, committer=None) -> KafkaMessageSource:
    source = KafkaMessageSource.__new__(KafkaMessageSource)  # no broker: the fake consumer
    source._consumer = consumer
    source._pending, source._next = {}, {A: 10, B: 20}
    source._before_revoke, source._committer, source._on_assignment = before_revoke, committer, None
    return source


def test_revoked_partitions_commit_what_was_handled_including_the_last_flush():
    consumer = _Consumer()
    source = _source(consumer)
    source.mark_processed({("in", 1): 7})
    # the flush before the revocation marks what it handled last
    source._before_revoke = lambda: source.mark_processed({("in", 0): 5})
    asyncio.run(_CommitOnRevoke(source).on_partitions_revoked({A}))
    assert consumer.committed == [{A: OffsetAndMetadata(5, "", -1)}]
    assert source._pending == {B: OffsetAndMetadata(7, "", -1)}, "B stays ours, uncommitted"
    assert A not in source._next


def test_lost_partitions_drop_their_offsets_without_committing(caplog):
    consumer = _Consumer()
    flushed = []
    source = _source(consumer, before_revoke=lambda: flushed.append(True))
    source.mark_processed({("in", 0): 5})
    with caplog.at_level(logging.WARNING):
        asyncio.run(_CommitOnRevoke(source).on_partitions_lost({A}))
    assert consumer.committed == [] and source._pending == {}
    assert flushed == [True], "the outputs are still flushed"
    assert "partitions lost" in caplog.text


def test_a_failed_commit_on_revoke_is_a_warning_not_a_crash(caplog):
    source = _source(_Consumer(fail=True))
    source.mark_processed({("in", 0): 5})
    with caplog.at_level(logging.WARNING):
        asyncio.run(_CommitOnRevoke(source).on_partitions_revoked({A}))
    assert "not committed" in caplog.text and source._pending == {}


def test_exactly_once_commits_every_marked_offset_in_the_transaction():
    calls = []
    source = _source(_Consumer(), committer=lambda offsets, meta: calls.append((offsets, meta)))
    source.mark_processed({("in", 0): 5, ("in", 1): 7})
    asyncio.run(_CommitOnRevoke(source).on_partitions_revoked({A}))
    assert calls == [({A: OffsetAndMetadata(5, "", -1), B: OffsetAndMetadata(7, "", -1)},
                      "group-metadata")]  # fmt: skip
    assert source._pending == {}
