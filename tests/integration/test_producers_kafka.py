"""What real producers send, through the real broker and both clients: every compression codec
written by librdkafka (confluent-kafka), Confluent-framed Avro, keys and headers of any bytes."""

from __future__ import annotations

import io

import fastavro
import orjson
import pytest

from tests.factories import encode, feature_message, feature_names, make_normal
from tests.integration.kafka_helpers import Topics, read_json, read_raw, running_service
from tests.integration.kafka_helpers import serve_settings as base_settings
from tests.schema_registry import LoopbackRegistry

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]
CLIENTS = pytest.mark.parametrize("client", ["kafka-python", "confluent"])
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
N = 100


def librdkafka_produce(
    broker: str,
    topic: str,
    values: list[bytes],
    *,
    compression: str = "none",
    keys: list[bytes | None] | None = None,
    headers: list[list[tuple[str, bytes]]] | None = None,
) -> None:
    import confluent_kafka as ck

    producer = ck.Producer(
        {"bootstrap.servers": broker, "compression.type": compression, "linger.ms": 20}
    )
    for i, value in enumerate(values):
        producer.produce(
            topic, value=value, key=None if keys is None else keys[i],
            headers=None if headers is None else headers[i],
        )  # fmt: skip
    assert producer.flush(30) == 0


@CLIENTS
def test_every_codec_from_a_librdkafka_producer_is_scored(broker, bundle_dir, tmp_path, client):
    topics = Topics.unique()
    settings = base_settings(broker, topics, bundle_dir, tmp_path, partitions=1, client=client)
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"compression_type": "zstd"})}
    )
    rows = make_normal(N * len(CODECS), seed=4)
    with running_service(settings):
        for c, codec in enumerate(CODECS):
            values = [
                encode(feature_message(rows[c * N + i], rid=f"{codec}-{i}")) for i in range(N)
            ]
            librdkafka_produce(broker, topics.input, values, compression=codec)
        scores = read_json(broker, topics.scores, expected=N * len(CODECS), partitions=1)
    ids = {s["id"] for s in scores}
    for codec in CODECS:
        assert {f"{codec}-{i}" for i in range(N)} <= ids, f"every {codec} record is scored"


AVRO_SCHEMA = {
    "type": "record",
    "name": "Features",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        *({"name": n, "type": ["null", "double"]} for n in feature_names(6)),
    ],
}
PARTIAL_SCHEMA = {  # a producer's schema that lacks a feature
    "type": "record",
    "name": "Partial",
    "fields": [{"name": "id", "type": "string"}, {"name": "x0", "type": "double"}],
}


def avro(schema_id: int, datum: dict, schema: dict = AVRO_SCHEMA) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), datum)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


@CLIENTS
def test_avro_with_a_schema_registry(broker, bundle_dir, tmp_path, client):
    registry = LoopbackRegistry({1: AVRO_SCHEMA, 2: PARTIAL_SCHEMA})
    topics = Topics.unique()
    settings = base_settings(broker, topics, bundle_dir, tmp_path, partitions=1, client=client)
    kafka = settings.kafka.model_copy(update={
        "value_format": "avro",
        "schema_registry_url": registry.url,
    })  # fmt: skip
    settings = settings.model_copy(update={"kafka": kafka})
    names = feature_names(6)
    rows = make_normal(50, seed=8)
    good = [
        avro(1, {"id": f"a{i}", "ts": 1_700_000_000_000 + i}
             | dict(zip(names, map(float, r), strict=True)))
        for i, r in enumerate(rows)
    ]  # fmt: skip
    with_null = avro(1, {"id": "null", "ts": 0} | dict.fromkeys(names, 1.0) | {"x3": None})
    bad = [
        with_null,
        avro(2, {"id": "partial", "x0": 1.0}, PARTIAL_SCHEMA),
        avro(1, {"id": "x", "ts": 0} | dict.fromkeys(names, 1.0))[:-3],  # truncated
        b"\x00\x00\x00\x00\x09" + good[0][5:],  # an id the registry does not know
        orjson.dumps({"features": rows[0].tolist()}),  # JSON on an Avro topic
    ]
    try:
        with running_service(settings):
            librdkafka_produce(broker, topics.input, good[:25] + bad + good[25:])
            scores = read_json(broker, topics.scores, expected=50, partitions=1)
            dead = read_raw(broker, topics.dead, expected=len(bad), partitions=1)
    finally:
        registry.close()
    assert {s["id"] for s in scores} == {f"a{i}" for i in range(50)}
    assert {s["ts"] for s in scores} == {1_700_000_000_000 + i for i in range(50)}
    reasons = sorted(dict(m.headers)["error"].decode() for m in dead)
    assert reasons == sorted(["invalid_record", "schema_mismatch", "invalid_avro",
                              "schema_mismatch", "invalid_avro"])  # fmt: skip
    assert sorted(m.value for m in dead) == sorted(bad), "dead letters carry the original bytes"


@CLIENTS
def test_keys_and_headers_of_any_bytes(broker, bundle_dir, tmp_path, client):
    topics = Topics.unique()
    settings = base_settings(broker, topics, bundle_dir, tmp_path, partitions=1, client=client)
    settings = settings.model_copy(update={"header_fields": {"tenant": "key"}})
    rows = make_normal(6, seed=2)
    values = [encode(feature_message(r, rid=f"h{i}")) for i, r in enumerate(rows)]
    keys = [b"\xff\xfe", b"plain", None, b"\x00" * 3, b"k", None]
    headers = [
        [("tenant", b"acme")],
        [("tenant", b"\xc3\x28 not utf-8")],
        [("other", b"\xff")],
        [],
        [("tenant", b"t" * 5_000)],
        [("tenant", b"")],
    ]
    with running_service(settings):
        librdkafka_produce(broker, topics.input, values, keys=keys, headers=headers)
        scores = read_json(broker, topics.scores, expected=6, partitions=1)
    key_of = {s["id"]: s["key"] for s in scores}
    assert key_of["h0"] == "acme"  # from the header
    assert key_of["h1"] == b"\xc3\x28 not utf-8".decode(errors="replace")
    assert key_of["h2"] is None  # no key field, no message key, no tenant header
    assert key_of["h3"] == "\x00\x00\x00"  # the message key
    assert len(key_of["h4"]) == 256
    assert key_of["h5"] == ""


def test_a_codec_kafka_python_cannot_read_is_a_start_up_error(
    broker, bundle_dir, tmp_path, monkeypatch
):
    from kafka import codec

    from streamvae.errors import BrokerError
    from streamvae.service import ScoringService

    monkeypatch.setattr(codec, "has_zstd", lambda: False)
    settings = base_settings(broker, Topics.unique(), bundle_dir, tmp_path)
    with pytest.raises(BrokerError, match="kafka-python cannot decompress zstd"):
        ScoringService(settings).__enter__()
