"""Avro in the Confluent wire format: real Avro bytes (fastavro's writer), a Schema Registry
client against the registry's documented REST responses served on loopback, local .avsc files.

No registry server can be installed here: ``tests.schema_registry.LoopbackRegistry`` serves
the registry's documented answers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import fastavro
import pytest

from streamvae.errors import ConfigError, DependencyError, PayloadDecodeError
from streamvae.stream.avro import LocalSchemas, RegistryClient, decode_avro, schema_id_of
from tests.schema_registry import LoopbackRegistry

SCHEMA = {
    "type": "record",
    "name": "Txn",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "amount", "type": "double"},
        {"name": "n_items", "type": ["null", "double"], "default": None},
    ],
}


def frame(schema_id: int, datum: dict, schema: dict = SCHEMA) -> bytes:
    """A Confluent-framed message, the way the serializers write it."""
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(schema), datum)
    return b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()


@pytest.fixture
def registry() -> Iterator[LoopbackRegistry]:
    running = LoopbackRegistry({7: SCHEMA})
    yield running
    running.close()


def test_registry_schemas_are_fetched_once_and_decode_real_avro(registry):
    client = RegistryClient(registry.url)
    datum = {"id": "t1", "ts": 1_700_000_000_123, "amount": 12.5, "n_items": None}
    for _ in range(3):
        assert decode_avro(frame(7, datum), client) == datum  # timestamp back as epoch ms
    assert registry.requests == ["/schemas/ids/7"], "cached by id"


def test_an_unknown_schema_id_is_a_schema_mismatch_and_not_asked_again_at_once(registry):
    client = RegistryClient(registry.url)
    for _ in range(2):
        with pytest.raises(PayloadDecodeError) as err:
            decode_avro(frame(42, {"id": "x", "ts": 0, "amount": 1.0}), client)
        assert err.value.reason == "schema_mismatch" and "42" in err.value.detail
    assert registry.requests == ["/schemas/ids/42"]


@pytest.mark.parametrize(
    "value",
    [b"", b"\x00\x00", b"{}", b"\x01\x00\x00\x00\x07abc", b"\x00\x00\x00\x00\x07", b"\x00" * 4],
)
def test_bad_framing_or_bodies_are_invalid_avro(registry, value):
    with pytest.raises(PayloadDecodeError) as err:
        decode_avro(value, RegistryClient(registry.url))
    assert err.value.reason == "invalid_avro"


def test_a_body_with_bytes_left_over_is_invalid(registry):
    good = frame(7, {"id": "t", "ts": 0, "amount": 1.0})
    with pytest.raises(PayloadDecodeError, match="left after"):
        decode_avro(good + b"\x00junk", RegistryClient(registry.url))
    assert schema_id_of(good) == 7


def test_basic_auth_and_refused_credentials():
    running = LoopbackRegistry({7: SCHEMA}, credentials=("key", "s3cret"))
    try:
        datum = {"id": "a", "ts": 5, "amount": 2.0, "n_items": 1.0}
        good = RegistryClient(running.url, username="key", password="s3cret")
        assert decode_avro(frame(7, datum), good) == datum
        with pytest.raises(DependencyError, match="refused the credentials"):
            RegistryClient(running.url, username="key", password="wrong").schema(7)
    finally:
        running.close()


def test_an_unreachable_registry_is_a_dependency_error_not_a_dead_letter():
    client = RegistryClient("http://127.0.0.1:9", timeout_s=0.5, retries=1)
    with pytest.raises(DependencyError, match="unavailable"):
        client.schema(1)
    assert client.requests == 2


def test_the_cache_is_bounded(registry):
    registry.schemas.update({i: SCHEMA for i in range(10, 20)})
    client = RegistryClient(registry.url, cache_size=3)
    for i in range(10, 20):
        client.schema(i)
    assert len(client._cache) == 3


def test_local_schema_files_by_id(tmp_path):
    (tmp_path / "7.avsc").write_text(json.dumps(SCHEMA))
    schemas = LocalSchemas(tmp_path)
    datum = {"id": "b", "ts": 1, "amount": 3.0, "n_items": None}
    assert decode_avro(frame(7, datum), schemas) == datum
    with pytest.raises(PayloadDecodeError, match="unknown Avro schema id 8"):
        decode_avro(frame(8, datum), schemas)
    (tmp_path / "txn.avsc").write_text(json.dumps(SCHEMA))
    with pytest.raises(ConfigError, match="<schema id>.avsc"):
        LocalSchemas(tmp_path)
    with pytest.raises(ConfigError, match="not a directory"):
        LocalSchemas(tmp_path / "missing")
