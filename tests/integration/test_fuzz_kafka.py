"""A seeded fuzz run through the real broker: hostile messages among good ones.

Every hostile message ends on the dead-letter topic with its reason, every good record is
scored, the counters agree, and the service is still healthy at the end. Set
``STREAMVAE_FUZZ_MESSAGES`` for a longer run (CI: 240).
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.request
from collections import Counter
from collections.abc import Callable

import pytest

from streamvae.stream.tools import produce_all
from tests.factories import encode, feature_message, feature_names, make_normal
from tests.integration.kafka_helpers import Topics, read_json, read_raw, running_service
from tests.integration.kafka_helpers import serve_settings as base_settings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

N_BAD = int(os.environ.get("STREAMVAE_FUZZ_MESSAGES", "240"))
MAX_BYTES, MAX_RECORDS = 65_536, 100
NAMES = feature_names(6)


RANDOM = object()


def _features(rng: random.Random, value: object = RANDOM) -> dict[str, object]:
    return {n: rng.uniform(-1, 1) if value is RANDOM else value for n in NAMES}


# each maker: rng -> (message value, the one dead-letter reason it must get)
MAKERS: dict[str, Callable[[random.Random], tuple[bytes | None, set[str]]]] = {
    "random_bytes": lambda r: (
        b"\xff" + r.randbytes(r.randint(0, 200)),
        {"invalid_json", "invalid_encoding"},
    ),
    "truncated": lambda r: (
        json.dumps({"id": "t", "features": _features(r)}).encode()[: r.randint(1, 40)],
        {"invalid_json"},
    ),
    "deep_nesting": lambda r: (
        b"[" * (d := r.randint(1_000, 60_000)) + b"]" * d,
        {"invalid_json", "too_large"},
    ),
    "huge": lambda r: (
        b'{"pad": "' + b"x" * r.randint(MAX_BYTES, 3 * MAX_BYTES) + b'"}',
        {"too_large"},
    ),
    "nan_inf": lambda r: (
        json.dumps({"features": _features(r, r.choice([float("nan"), float("inf")]))}).encode(),
        {"non_finite"},
    ),
    "float32_overflow": lambda r: (
        json.dumps({"features": _features(r, 1e300)}).encode(),
        {"non_finite"},
    ),
    "wrong_types": lambda r: (
        json.dumps({"features": _features(r, r.choice(["1", None, True, [], {}]))}).encode(),
        {"invalid_record"},
    ),
    "missing_features": lambda r: (
        json.dumps({"features": dict(list(_features(r).items())[: r.randint(0, 5)])}).encode(),
        {"schema_mismatch"},
    ),
    "unknown_features": lambda r: (
        json.dumps({"features": _features(r) | {f"extra{r.randint(0, 9)}": 1.0}}).encode(),
        {"schema_mismatch"},
    ),
    "oversized_batch": lambda r: (
        json.dumps([{"features": _features(r)}] * (MAX_RECORDS + r.randint(1, 50))).encode(),
        {"too_large"},
    ),
    "absurd_ts": lambda r: (
        json.dumps(
            {"ts": r.choice([-1, 2**63, 2**70, "yesterday", 1.5]), "features": _features(r)}
        ).encode(),
        {"invalid_record"},
    ),
    "not_an_object": lambda r: (
        json.dumps(r.choice([1, "x", None, [], 2.5])).encode(),
        {"invalid_record"},
    ),
    "empty": lambda r: (r.choice([b"", None, b"   "]), {"invalid_json"}),
}


def test_a_seeded_fuzz_stream_is_contained_and_the_good_records_scored(
    broker, bundle_dir, tmp_path
):
    rng = random.Random(20261121)
    kinds = sorted(MAKERS)
    bad = [(kind, *MAKERS[kind](rng)) for kind in (kinds[i % len(kinds)] for i in range(N_BAD))]
    good = [
        encode(feature_message(r, rid=f"g{i}")) for i, r in enumerate(make_normal(N_BAD, seed=4))
    ]
    stream: list[bytes | None] = []
    for (_, value, _), ok in zip(bad, good, strict=True):
        stream += [value, ok]
    topics = Topics.unique()
    settings = base_settings(broker, topics, bundle_dir, tmp_path, partitions=1).model_copy(
        update={"max_message_bytes": MAX_BYTES, "max_records_per_message": MAX_RECORDS}
    )
    with running_service(settings) as running:
        produce_all(broker, topics.input, stream, key=lambda i: b"fuzz")  # type: ignore[arg-type]
        scores = read_json(broker, topics.scores, len(good), partitions=1, timeout_s=120)
        time.sleep(0.3)
        url = running.service.metrics_url.replace("/metrics", "/healthz")
        with urllib.request.urlopen(url, timeout=5) as resp:
            healthy = resp.status == 200
        get = running.service.metrics.registry.get_sample_value
        dead_counted = sum(
            get("streamvae_records_dead_lettered_total", {"reason": r}) or 0
            for r in {reason for *_, reasons in bad for reason in reasons}
        )
        errors = get("streamvae_errors_total", {"kind": "scoring"})
        consumed = get("streamvae_records_consumed_total")
        dead = read_raw(broker, topics.dead, int(dead_counted), partitions=1, timeout_s=60)
        sent = read_raw(broker, topics.input, len(stream), partitions=1, timeout_s=60)
        alive = running.thread.is_alive()
    assert healthy and alive and errors == 0, "the service kept running"
    assert {s["id"] for s in scores} == {f"g{i}" for i in range(len(good))}
    assert len(dead) == dead_counted, "the counters agree with the dead-letter topic"
    # at-least-once: a rebalance may re-deliver a few records (same source, same verdict)
    assert consumed >= len(sent) == len(stream), "every message on the input was consumed"
    sources = {dict(letter.headers)["source"] for letter in dead}
    assert len(sources) == len(bad), "one dead letter per hostile message, re-deliveries aside"
    # matched by content: each dead letter carries its message's original bytes
    expected = {value or b"": reasons for _, value, reasons in bad}
    for letter in dead:
        assert letter.value in expected, "only hostile messages are dead-lettered"
        reason = dict(letter.headers)["error"].decode()
        assert reason in expected[letter.value], f"{letter.value[:40]!r}: {reason}"
    assert set(expected) <= {letter.value for letter in dead}, "every hostile message"
    got = Counter(kind for kind, *_ in bad)
    print(f"\nfuzz through the broker: {len(bad)} hostile messages ({dict(got)}), "
          f"{len(good)} good records scored, {len(dead)} dead letters "
          f"({int(consumed) - len(sent)} re-delivered), 0 crashes")  # fmt: skip
