"""Property-based fuzzing of both pipelines: no input crashes them, every bad record is
dead-lettered with the right reason, and the good records around it are still scored.

``STREAMVAE_FUZZ_EXAMPLES`` raises the number of generated cases (CI runs a bounded, seeded
number; the figures in the notes come from a longer run).
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter

import orjson
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from streamvae.bundle import TabularDetector
from streamvae.bundle.window import WindowDetector
from streamvae.service import PipelineConfig
from streamvae.service.features import feature_pipeline as build_feature_pipeline
from streamvae.service.kpi import KpiState, kpi_pipeline
from streamvae.service.outcome import MAX_TS_MS
from streamvae.types import DEAD_LETTER_REASONS, InboundMessage, ModelRef
from tests.factories import feature_names, make_kpi_bundle

EXAMPLES = int(os.environ.get("STREAMVAE_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="STREAMVAE_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_BYTES, MAX_RECORDS = 8_192, 50
NAMES = feature_names(6)
CONFIG = PipelineConfig(
    alert_topic="alerts", dead_letter_topic="dlq", score_topic="scores",
    max_message_bytes=MAX_BYTES, max_records_per_message=MAX_RECORDS,
)  # fmt: skip

finite = st.floats(min_value=-5, max_value=5, allow_nan=False)
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=20)
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def good_record(i: int, values: list[float]) -> dict[str, object]:
    return {
        "id": f"good-{i}",
        "ts": 1_700_000_000_000 + i,
        "features": dict(zip(NAMES, values, strict=True)),
    }


def dumps(value: object) -> bytes:
    """JSON the way a careless producer writes it (NaN/Infinity tokens allowed)."""
    return json.dumps(value, allow_nan=True).encode()


# (strategy of raw message values, the dead-letter reasons it may end with)
BAD_INPUTS = {
    "random_bytes": (
        st.binary(min_size=1, max_size=300),
        {"invalid_json", "invalid_encoding", "invalid_record", "schema_mismatch", "non_finite"},
    ),
    "truncated": (
        st.tuples(st.lists(finite, min_size=6, max_size=6), st.integers(1, 60)).map(
            lambda t: orjson.dumps(good_record(0, t[0]))[: t[1]]
        ),
        {"invalid_json"},
    ),
    "deep_nesting": (
        st.integers(50, 200_000).map(lambda d: b"[" * d + b"]" * d),
        {"invalid_json", "too_large", "invalid_record"},
    ),
    "deep_features": (
        st.integers(2, 5_000).map(lambda d: b'{"features": ' + b"[" * d + b"1" + b"]" * d + b"}"),
        {"invalid_json", "schema_mismatch", "too_large"},
    ),
    "huge": (
        st.integers(MAX_BYTES + 1, 4 * MAX_BYTES).map(lambda n: b'{"x": "' + b"a" * n + b'"}'),
        {"too_large"},
    ),
    "non_finite": (
        st.sampled_from([math.nan, math.inf, -math.inf]).map(
            lambda v: dumps({"features": dict.fromkeys(NAMES, v)})
        ),
        {"non_finite"},
    ),
    "overflow": (
        st.just(b'{"features": {' + b", ".join(f'"{n}": 1e300'.encode() for n in NAMES) + b"}}"),
        {"non_finite"},
    ),
    "wrong_types": (
        st.sampled_from(["1.0", None, True, [1.0], {"v": 1}]).map(
            lambda v: dumps({"features": dict.fromkeys(NAMES, v)})
        ),
        {"invalid_record"},
    ),
    "wrong_features": (
        st.dictionaries(st.text(max_size=6), finite, max_size=8)
        .filter(lambda d: set(d) != set(NAMES))
        .map(lambda d: dumps({"features": d})),
        {"schema_mismatch"},
    ),
    "any_json": (
        json_value.map(dumps),
        {"invalid_json", "invalid_record", "schema_mismatch", "non_finite", "too_large"},
    ),
    "oversized_batch": (
        st.integers(MAX_RECORDS + 1, 3 * MAX_RECORDS).map(lambda n: orjson.dumps([{"f": 1}] * n)),
        {"too_large"},
    ),
    "absurd_ts": (
        st.one_of(
            st.integers(-(2**64), 2**64).filter(lambda t: not 0 <= t <= MAX_TS_MS),
            st.floats(),
            st.text(max_size=5),
        ).map(lambda ts: dumps({"id": "ts", "ts": ts, "features": dict.fromkeys(NAMES, 0.5)})),
        {"invalid_record", "non_finite"},
    ),
    "empty": (
        st.sampled_from([b"", b" ", b"null", b"[]", b"{}"]),
        {"invalid_json", "invalid_record"},
    ),
}


TRIED: Counter[str] = Counter()  # hostile messages fed, by kind (printed with -s)


@pytest.fixture(scope="module", autouse=True)
def _report_tried():
    yield
    print(f"\nfuzz: {sum(TRIED.values())} hostile messages tried, none crashed: {dict(TRIED)}")


@pytest.fixture(scope="module")
def feature_pipeline(small_bundle):
    return build_feature_pipeline(TabularDetector(small_bundle), ModelRef("m", "1"), CONFIG)


def stream(bad: list[bytes], good: list[list[float]]) -> list[InboundMessage]:
    """Good records interleaved with the bad messages, one message each."""
    values = [orjson.dumps(good_record(i, v)) for i, v in enumerate(good)]
    mixed: list[bytes] = []
    for i in range(max(len(bad), len(values))):
        mixed += bad[i : i + 1] + values[i : i + 1]
    return [InboundMessage("in", 0, i, v, None, 1_000) for i, v in enumerate(mixed)]


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_feature_inputs_are_contained(feature_pipeline, kind):
    strategy, reasons = BAD_INPUTS[kind]

    @FUZZ
    @seed(7)
    @given(
        bad=st.lists(strategy, min_size=1, max_size=4),
        good=st.lists(st.lists(finite, min_size=6, max_size=6), min_size=1, max_size=4),
    )
    def run(bad, good):
        TRIED[kind] += len(bad)
        out = feature_pipeline.handle(stream(bad, good), 2_000_000_000_000)
        dead = sum(out.dead_letters.values())
        assert out.records_consumed == out.records_scored + dead
        assert set(out.dead_letters) <= set(DEAD_LETTER_REASONS)
        assert set(out.dead_letters) <= reasons, f"{kind}: {out.dead_letters}"
        assert dead >= len(bad), f"{kind}: every hostile message is dead-lettered"
        scored = {orjson.loads(m.value)["id"] for m in out.outbound if m.topic == "scores"}
        assert {f"good-{i}" for i in range(len(good))} <= scored, "good records around bad ones"
        for message in out.outbound:
            if message.topic == "dlq":
                headers = dict(message.headers)
                assert headers["error"].decode() in reasons and headers["detail"]

    run()


# ---------------------------------------------------------------------------------- KPI

W = 8


@pytest.fixture(scope="module")
def kpi_bundle():
    return make_kpi_bundle(window_len=W, epochs=3)


KPI_BAD = st.one_of(
    st.binary(max_size=100),
    json_value.map(dumps),
    st.fixed_dictionaries(
        {
            "series": st.one_of(st.text(max_size=300), json_scalar),
            "ts": json_scalar,
            "value": json_scalar,
        }
    ).map(dumps),
    st.integers(-(2**64), 2**64).map(
        lambda ts: dumps({"series": "absurd", "ts": ts, "value": 1.0})
    ),
    st.text(min_size=1, max_size=20).map(
        lambda s: dumps({"series": f"unknown-{s}", "ts": 5, "value": 1.0})
    ),
)


@FUZZ
@seed(11)
@given(bad=st.lists(KPI_BAD, min_size=1, max_size=12))
def test_bad_kpi_points_never_stop_the_series_around_them(kpi_bundle, bad):
    TRIED["kpi"] += len(bad)
    pipe = kpi_pipeline(
        WindowDetector(kpi_bundle), ModelRef("kpi", "1"),
        PipelineConfig(alert_topic="a", dead_letter_topic="dlq", max_message_bytes=MAX_BYTES),
        KpiState(state_topic="state", max_series=64),
    )  # fmt: skip
    interval = kpi_bundle.preprocess.spec.interval_ms
    good = [
        dumps({"series": "cpu.good", "ts": 10**12 + i * interval, "value": 50.0 + i % 3})
        for i in range(3 * W)
    ]
    values = [
        v for pair in zip(good, bad + [b"{}"] * len(good), strict=False) for v in pair
    ] + good[len(bad) :]
    out = pipe.handle(
        [InboundMessage("kpi", 0, i, v, None, 1_000) for i, v in enumerate(values)], 0
    )
    dead = sum(out.dead_letters.values())
    assert out.records_consumed == out.records_scored + dead + sum(out.unscored.values())
    assert set(out.dead_letters) <= set(DEAD_LETTER_REASONS)
    assert out.records_scored >= 2 * W + 1, "the good series fills its window and is scored"
    assert len(pipe.input.store) <= 64, "series are bounded whatever arrives"
    pipe.checkpoint_messages()  # snapshots of whatever was accepted serialise


# ------------------------------------------------------------------------------- images

IMAGE_DTYPES = st.sampled_from(["uint8", "float32", "float64", "int32", "bool", "complex64"])
image_arrays = st.tuples(
    st.lists(st.integers(0, 20), min_size=1, max_size=5), IMAGE_DTYPES, st.integers(0, 2**32 - 1)
).map(lambda t: _random_array(*t))


def _random_array(shape: list[int], dtype: str, rng_seed: int) -> bytes:
    import numpy as np

    from streamvae.data.images import encode_npy

    rng = np.random.default_rng(rng_seed)
    values = rng.normal(0.5, 1.0, size=shape) if rng.random() < 0.5 else rng.random(size=shape)
    return encode_npy(values.astype(dtype))


IMAGE_BAD = st.tuples(
    st.one_of(
        st.binary(max_size=200),
        image_arrays,
        image_arrays.map(lambda b: b[: max(len(b) // 2, 1)]),  # truncated .npy
    ),
    st.one_of(st.none(), st.binary(max_size=30), json_value.map(dumps)),  # the ids header
    st.sampled_from([b"application/x-npy", b"image/png", b""]),
)


@pytest.fixture(scope="module")
def image_pipeline():
    from streamvae.bundle.image import ImageDetector
    from streamvae.service.images import image_pipeline
    from tests.factories import make_image_bundle

    config = PipelineConfig(
        alert_topic="a", dead_letter_topic="dlq", score_topic="s",
        max_message_bytes=MAX_BYTES * 8, max_records_per_message=16,
    )  # fmt: skip
    return image_pipeline(ImageDetector(make_image_bundle(epochs=2)), ModelRef("img", "1"), config)


@FUZZ
@seed(13)
@given(bad=st.lists(IMAGE_BAD, min_size=1, max_size=6))
def test_bad_image_batches_are_contained_and_good_ones_scored(image_pipeline, bad):
    import numpy as np

    from streamvae.data.images import encode_npy

    TRIED["images"] += len(bad)
    good = encode_npy(np.full((3, 1, 16, 16), 128, np.uint8))
    npy = (("content-type", b"application/x-npy"),)
    messages = []
    for i, (value, ids, content_type) in enumerate(bad):
        headers = (("content-type", content_type),) + (() if ids is None else (("ids", ids),))
        messages.append(InboundMessage("img", 0, 2 * i, value, None, 1_000, headers))
        messages.append(InboundMessage("img", 0, 2 * i + 1, good, None, 1_000, npy))
    out = image_pipeline.handle(messages, 0)
    dead = sum(out.dead_letters.values())
    assert out.records_consumed == out.records_scored + dead
    assert set(out.dead_letters) <= set(DEAD_LETTER_REASONS)
    assert out.records_scored >= 3 * len(bad), "the good batches around them are scored"
