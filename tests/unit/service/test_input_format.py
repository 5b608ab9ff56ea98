"""The input adapter: Avro records validated exactly as JSON ones, header fields, originals
in dead letters, and a registry outage that stops the service instead of dead-lettering."""

from __future__ import annotations

import io
import json

import fastavro
import orjson
import pytest
from prometheus_client import CollectorRegistry

from streamvae.bundle import TabularDetector
from streamvae.errors import DependencyError
from streamvae.metrics import ServiceMetrics
from streamvae.service import PipelineConfig, RunnerConfig, ServiceRunner
from streamvae.service.features import feature_pipeline
from streamvae.service.input_format import InputAdapter
from streamvae.stream.avro import LocalSchemas
from streamvae.types import InboundMessage, ModelRef
from tests.factories import FakeSource, ListSink, feature_names, make_normal

NAMES = feature_names(6)
SCHEMA = {
    "type": "record",
    "name": "Features",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "tenant", "type": ["null", "string"], "default": None},
        *({"name": n, "type": ["null", "double", "string"]} for n in NAMES),
    ],
}


def avro(datum: dict, schema_id: int = 3) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(SCHEMA), datum)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


@pytest.fixture
def adapter(small_bundle, tmp_path):
    (tmp_path / "3.avsc").write_text(json.dumps(SCHEMA))
    pipeline = feature_pipeline(
        TabularDetector(small_bundle), ModelRef("m", "1"),
        PipelineConfig(alert_topic="alerts", dead_letter_topic="dlq", score_topic="scores"),
    )  # fmt: skip
    return InputAdapter(
        pipeline, dead_letter_topic="dlq", schemas=LocalSchemas(tmp_path), feature_names=NAMES,
        header_fields={"tenant": "tenant"},
    )  # fmt: skip


def _messages(values: list[bytes], headers=()) -> list[InboundMessage]:
    return [InboundMessage("in", 0, i, v, None, 1_000, headers) for i, v in enumerate(values)]


def test_avro_records_are_scored_and_bad_ones_dead_lettered_as_json_would_be(adapter):
    row = dict(zip(NAMES, make_normal(1, seed=2)[0].tolist(), strict=True))
    values = [
        avro({"id": "ok", "tenant": None, **row}),
        avro({"id": "null", "tenant": None, **row} | {"x2": None}),
        avro({"id": "text", "tenant": None, **row} | {"x2": "1.5"}),
        avro({"id": "other-id", "tenant": None, **row}, schema_id=4),
        b"\x00\x00\x00\x00\x03\xff",
        b'{"features": [1, 2, 3, 4, 5, 6]}',
    ]
    out = adapter.handle(_messages(values, (("tenant", b"acme"),)), now_ms=0)
    assert out.records_consumed == 6 and out.records_scored == 1
    assert out.dead_letters == {"invalid_record": 2, "schema_mismatch": 1, "invalid_avro": 2}
    scores = [orjson.loads(m.value) for m in out.outbound if m.topic == "scores"]
    assert [s["id"] for s in scores] == ["ok"]
    dead = [m for m in out.outbound if m.topic == "dlq"]
    assert sorted(m.value for m in dead) == sorted(values[1:]), "the bytes the producer sent"
    assert out.offsets == {("in", 0): 6}


def test_header_fields_fill_what_json_records_lack(small_bundle):
    pipeline = feature_pipeline(
        TabularDetector(small_bundle), ModelRef("m", "1"),
        PipelineConfig(alert_topic="alerts", dead_letter_topic="dlq", score_topic="scores"),
    )  # fmt: skip
    adapter = InputAdapter(pipeline, dead_letter_topic="dlq", header_fields={"acct": "key"})
    row = make_normal(2, seed=1).tolist()
    values = [
        orjson.dumps({"id": "a", "features": row[0]}),
        orjson.dumps([{"id": "b", "features": row[1], "key": "own"}, 7]),
        b"{broken",
    ]
    headers = (("acct", b"\xff\xfeacct-9"), ("acct", b"second"))
    out = adapter.handle(_messages(values, headers), now_ms=0)
    keys = {s["id"]: s["key"] for s in map(orjson.loads, (m.value for m in out.outbound
                                                          if m.topic == "scores"))}  # fmt: skip
    assert keys == {"a": "\ufffd\ufffdacct-9", "b": "own"}
    assert out.dead_letters == {"invalid_record": 1, "invalid_json": 1}


def test_an_inactive_adapter_is_not_used():
    assert not InputAdapter(None, dead_letter_topic="dlq").active  # type: ignore[arg-type]


class _Outage:
    def schema(self, schema_id):
        raise DependencyError("schema registry http://registry:8081 unavailable")


def test_a_registry_outage_stops_the_runner_without_dead_letters(small_bundle):
    pipeline = feature_pipeline(
        TabularDetector(small_bundle), ModelRef("m", "1"),
        PipelineConfig(alert_topic="alerts", dead_letter_topic="dlq"),
    )  # fmt: skip
    adapter = InputAdapter(
        pipeline, dead_letter_topic="dlq", schemas=_Outage(), feature_names=NAMES
    )
    value = avro({"id": "x", "tenant": None, **dict.fromkeys(NAMES, 1.0)})
    source, sink = FakeSource(_messages([value]), 5), ListSink()
    metrics = ServiceMetrics(CollectorRegistry())
    runner = ServiceRunner(source, sink, adapter, metrics, RunnerConfig(poll_timeout_ms=1))
    with pytest.raises(DependencyError):
        runner.run()
    assert sink.sent == [] and source.commits == 0
    assert metrics.registry.get_sample_value("streamvae_errors_total", {"kind": "dependency"}) == 1
