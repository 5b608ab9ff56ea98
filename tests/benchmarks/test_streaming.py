"""Streaming throughput of `serve` against the raw consume rate of the same client and topic.

One process, one partition, the embedded broker, 30-float JSON records (~300 bytes with the
features as a list, ~480 with them named); raw and served runs interleaved, median of 5 (this
2-core machine is noisy). Prints a table and writes bench-results/streaming.json. No timing
assertions.
"""

from __future__ import annotations

import uuid

import pytest

from streamvae.bundle import save_bundle
from tests.benchmarks.harness import (
    D,
    encode_all,
    fill_topic,
    median,
    raw_confluent_rate,
    raw_consume_rate,
    records,
    serve_settings,
    service_run,
    write_json,
)
from tests.factories import make_bundle

N_RECORDS = 200_000
CASES = (  # label, records per message, named features
    ("1 record / message", 1, False),
    ("1 record / message, named", 1, True),
    ("100 records / message", 100, False),
)
REPS = 5
CLIENTS = ("kafka-python", "confluent")


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
def test_service_throughput_vs_raw_consume(broker, tmp_path):
    model_dir = save_bundle(make_bundle(d=D, epochs=5), tmp_path / "model")
    results = []
    for label, per_message, named in CASES:
        topic = f"speed-{uuid.uuid4().hex[:8]}"
        messages = encode_all(records(N_RECORDS, named=named), per_message)
        fill_topic(broker, topic, messages)
        for client in CLIENTS:
            raw_rate = raw_consume_rate if client == "kafka-python" else raw_confluent_rate
            raw, served = [], []
            for rep in range(REPS):
                raw.append(raw_rate(broker, topic, len(messages), per_message))
                group = f"g-{topic}-{client}-{rep}"
                settings = serve_settings(broker, model_dir, tmp_path, topic, group, client)
                stats = service_run(settings, len(messages))
                assert stats.scored == N_RECORDS
                served.append(stats.scored / stats.active_s)
            results.append({
                "case": label, "client": client, "records": N_RECORDS,
                "message_bytes": sum(map(len, messages)) / len(messages),
                "raw_records_per_s": median(raw), "serve_records_per_s": median(served),
                "ratio": median(served) / median(raw), "raw_runs": raw, "serve_runs": served,
            })  # fmt: skip
    print(
        f"\n{'case':<27} {'client':<13} {'raw consume rec/s':>18} {'serve rec/s':>12} {'ratio':>7}"
    )
    for r in results:
        raw, served = r["raw_records_per_s"], r["serve_records_per_s"]
        print(
            f"{r['case']:<27} {r['client']:<13} {raw:>18,.0f} {served:>12,.0f} {r['ratio']:>7.0%}"
        )
    write_json("streaming.json", results)
