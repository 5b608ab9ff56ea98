"""Records/s of `serve` on what real producers send: JSON uncompressed and in every codec, and
Confluent-framed Avro, each written by librdkafka (confluent-kafka) into its own topic.

One process, one partition, the embedded broker, the streaming benchmark's 30-float records,
one record per message, median of 3 per case and client. The decode cost of a codec or format
is the difference of the per-record times from plain JSON. Prints a table and writes
bench-results/producer_formats.json. No timing assertions.
"""

from __future__ import annotations

import io
import json
import uuid

import fastavro
import orjson
import pytest

from streamvae.bundle import save_bundle
from streamvae.config import KafkaSettings
from streamvae.stream.admin import ensure_topics
from tests.benchmarks.harness import D, median, records, serve_settings, service_run, write_json
from tests.factories import feature_names, make_bundle

N_RECORDS = 50_000
REPS = 3
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
CLIENTS = ("kafka-python", "confluent")
SCHEMA = {
    "type": "record",
    "name": "Features",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "ts", "type": "long"},
        *({"name": n, "type": "double"} for n in feature_names(D)),
    ],
}


def _avro(values: list[dict]) -> list[bytes]:
    parsed = fastavro.parse_schema(SCHEMA)
    names = feature_names(D)
    out = []
    for record in values:
        body = io.BytesIO()
        datum = {"id": record["id"], "ts": record["ts"]}
        datum |= dict(zip(names, record["features"], strict=True))
        fastavro.schemaless_writer(body, parsed, datum)
        out.append(b"\x00\x00\x00\x00\x01" + body.getvalue())
    return out


def _fill(broker: str, topic: str, values: list[bytes], codec: str) -> None:
    import confluent_kafka as ck

    ensure_topics(KafkaSettings(bootstrap_servers=broker), (topic,), partitions=1)
    producer = ck.Producer({"bootstrap.servers": broker, "compression.type": codec,
                            "linger.ms": 50, "batch.size": 1_048_576})  # fmt: skip
    for value in values:
        while True:
            try:
                producer.produce(topic, value=value)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
def test_records_per_second_by_codec_and_format(broker, tmp_path):
    model_dir = save_bundle(make_bundle(d=D, epochs=5), tmp_path / "model")
    schema_dir = tmp_path / "schemas"
    schema_dir.mkdir()
    (schema_dir / "1.avsc").write_text(json.dumps(SCHEMA))
    rows = records(N_RECORDS)
    as_json = [orjson.dumps(r) for r in rows]
    cases = [(f"JSON{'' if c == 'none' else ' + ' + c}", c, as_json, "json") for c in CODECS]
    cases.append(("Avro (Confluent framing)", "none", _avro(rows), "avro"))
    results = []
    for label, codec, values, value_format in cases:
        topic = f"fmt-{uuid.uuid4().hex[:8]}"
        _fill(broker, topic, values, codec)
        for client in CLIENTS:
            rates = []
            for rep in range(REPS):
                settings = serve_settings(broker, model_dir, tmp_path, topic, f"g-{topic}-{client}-{rep}", client)  # fmt: skip
                extra = {"value_format": value_format}
                if value_format == "avro":
                    extra["avro_schema_dir"] = str(schema_dir)
                kafka = settings.kafka.model_copy(update=extra)
                stats = service_run(settings.model_copy(update={"kafka": kafka}), len(values))
                assert stats.scored == N_RECORDS, (label, client, stats)
                rates.append(stats.scored / stats.active_s)
            results.append({
                "case": label, "codec": codec, "format": value_format, "client": client,
                "records": N_RECORDS, "message_bytes": sum(map(len, values)) / len(values),
                "records_per_s": median(rates), "runs": rates,
            })  # fmt: skip
    base = {r["client"]: r["records_per_s"] for r in results if r["case"] == "JSON"}
    print(f"\n{'case':<26} {'client':<13} {'bytes/msg':>9} {'records/s':>10} {'+us/record':>11}")
    for r in results:
        extra_us = 1e6 / r["records_per_s"] - 1e6 / base[r["client"]]
        r["extra_us_per_record"] = extra_us
        print(
            f"{r['case']:<26} {r['client']:<13} {r['message_bytes']:>9.0f} "
            f"{r['records_per_s']:>10,.0f} {extra_us:>+11.1f}"
        )
    write_json("producer_formats.json", results)
