"""Poison records through the real broker: one partition, good records, then every poison
record the service used to crash-loop on, then good records. The service stays up, every
good record is scored, every poison record is scored or dead-lettered, and the committed
offset passes them all. A missing output topic is a one-line error at start-up."""

from __future__ import annotations

import json
import time
import urllib.request

import numpy as np
import orjson
import pytest
from kafka import KafkaAdminClient

from streamvae.bundle import TabularDetector
from streamvae.errors import BrokerError
from streamvae.service import ScoringService
from streamvae.stream.admin import ensure_topics
from streamvae.stream.tools import produce_all
from tests.factories import encode, feature_message, make_normal
from tests.integration.kafka_helpers import (
    Topics,
    read_json,
    read_raw,
    running_service,
    serve_settings,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]
CLIENTS = pytest.mark.parametrize("client", ["kafka-python", "confluent"])
MARKER = 12_345.0  # a feature value the patched model fails on


def _poison(row: list[float]) -> list[tuple[bytes, bytes | None]]:
    """(value, message key) of each poison record; ``row`` is a valid feature vector."""
    with_fields = [
        {"features": row, "key": 7, "id": "p-int-key"},
        {"features": row, "key": {}, "id": "p-obj-key"},
        {"features": row, "key": [], "id": "p-list-key"},
        {"features": row, "key": True, "id": ["p", "list", "id"]},
        {"features": row, "key": "k" * 500_000, "id": "p-huge-key"},
        {"features": row, "id": "i" * 500_000},
        {"features": row, "id": "p-bad-message-key"},
        {"features": [MARKER, *row[1:]], "id": "p-model-fails"},
    ]
    values = [orjson.dumps(r) for r in with_fields]
    keys: list[bytes | None] = [None] * len(values)
    keys[6] = b"\xff\xfe\x00not utf-8"
    values += [b"{}", b"[]", b"7", b'{"features": {}}', b"\xff" * 20]
    keys += [None] * 5
    return list(zip(values, keys, strict=True))


def _committed(bootstrap: str, group: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)


@CLIENTS
def test_poison_records_never_stall_the_partition(
    broker, bundle_dir, tmp_path, monkeypatch, client
):
    original = TabularDetector.score

    def fails_on_marker(self, features, context=None):
        if np.any(features == np.float32(MARKER)):
            raise FloatingPointError("model blew up")  # a processing error, not bad input
        return original(self, features, context)

    monkeypatch.setattr(TabularDetector, "score", fails_on_marker)
    topics = Topics.unique()
    settings = serve_settings(broker, topics, bundle_dir, tmp_path, partitions=1, client=client)
    settings = settings.model_copy(update={"max_output_bytes": 100_000, "commit_interval_s": 0.2})
    rows = make_normal(40, seed=9)
    good = [encode(feature_message(r, rid=f"g{i}")) for i, r in enumerate(rows)]
    poison = _poison(rows[0].tolist())
    values = good[:20] + [v for v, _ in poison] + good[20:]
    keys = [None] * 20 + [k for _, k in poison] + [None] * 20
    with running_service(settings) as running:
        produce_all(broker, topics.input, values, key=lambda i: keys[i])
        scores = read_json(broker, topics.scores, expected=47, partitions=1)
        dead = read_raw(broker, topics.dead, expected=6, partitions=1)
        deadline = time.monotonic() + 30
        while _committed(broker, topics.group, topics.input) < len(values):
            assert time.monotonic() < deadline, "the committed offset never passed the poison"
            time.sleep(0.2)
        url = running.service.metrics_url.replace("/metrics", "/healthz")
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert json.loads(resp.read())["status"] == "ok"
        assert running.thread.is_alive(), "the service is still up"
    ids = [s["id"] for s in scores]
    assert {f"g{i}" for i in range(40)} <= set(ids), "every good record is scored"
    assert {"p-int-key", "p-obj-key", "p-list-key", "p-huge-key", "p-bad-message-key"} <= set(ids)
    by_id = {s["id"]: s for s in scores}
    assert by_id["p-int-key"]["key"] == "7" and by_id["p-obj-key"]["key"] == "{}"
    assert len(by_id["p-huge-key"]["key"]) == 256
    assert by_id["p-bad-message-key"]["key"] == b"\xff\xfe\x00not utf-8".decode(errors="replace")
    assert any(s["id"] == '["p","list","id"]' for s in scores)
    assert any(len(s["id"] or "") == 256 for s in scores), "a huge id is bounded"
    reasons = sorted(dict(m.headers)["error"].decode() for m in dead)
    assert reasons == ["invalid_encoding", "invalid_record", "invalid_record", "invalid_record",
                       "processing_error", "schema_mismatch"]  # fmt: skip
    failed = next(m for m in dead if dict(m.headers)["error"] == b"processing_error")
    assert dict(failed.headers)["exception"] == b"FloatingPointError"
    assert orjson.loads(failed.value)["id"] == "p-model-fails", "the original bytes"
    stats = running.stats[0]
    assert stats.consumed == len(values) == stats.scored + stats.dead_lettered


def test_a_missing_output_topic_is_a_one_line_error_at_start(broker, bundle_dir, tmp_path):
    topics = Topics.unique()
    settings = serve_settings(broker, topics, bundle_dir, tmp_path)
    kafka = settings.kafka.model_copy(update={"alert_topic": f"missing-{topics.group}"})
    ensure_topics(kafka, (topics.input,))
    with pytest.raises(BrokerError, match=r"output topic 'missing-.*' \(kafka.alert_topic\)"):
        ScoringService(settings.model_copy(update={"kafka": kafka})).__enter__()
