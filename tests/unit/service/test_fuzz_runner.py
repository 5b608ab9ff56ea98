"""Property-based tests of the whole path, handler *and* runner, from bytes to sent outputs.

Every field of a record may be any JSON value (``key``, ``id``, ``ts``, ``context``, a
segment, the features), message keys and headers any bytes, ``.npy`` headers any shape. The
runner runs with ``on_processing_error="fail"``, so an exception anywhere fails the test
instead of being dead-lettered: the pipelines must contain all of it themselves. Invariants:
the run ends, ``scored + dead_lettered (+ unscored) == consumed``, the committed offset passes
every message, and every output is valid and fits ``max_output_bytes``.
``STREAMVAE_FUZZ_EXAMPLES`` raises the number of cases (the note's figures: a longer run).
"""

from __future__ import annotations

import io
import os
from collections import Counter

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streamvae.bundle import TabularDetector
from streamvae.bundle.window import WindowDetector
from streamvae.metrics import ServiceMetrics
from streamvae.service import PipelineConfig, RunnerConfig, ServiceRunner
from streamvae.service.features import feature_pipeline as build_feature_pipeline
from streamvae.service.input_format import InputAdapter
from streamvae.service.kpi import KpiState, kpi_pipeline
from streamvae.service.outcome import output_size
from streamvae.thresholds import HygienePolicy
from streamvae.types import InboundMessage, ModelRef
from tests.factories import FakeSource, ListSink, feature_names, make_kpi_bundle
from tests.unit.service.test_fuzz import dumps, json_scalar, json_value

EXAMPLES = int(os.environ.get("STREAMVAE_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="STREAMVAE_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NAMES = feature_names(6)
MAX_OUTPUT = 4_096
GATE = HygienePolicy(cooldown_ms=1_000, confirm_m=1, confirm_n=2)  # the gate sees every key
TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_tried():
    yield
    print(f"\nrunner fuzz: {sum(TRIED.values())} messages through handler+runner, none crashed: "
          f"{dict(TRIED)}")  # fmt: skip


any_json = json_value | st.text(min_size=300, max_size=3_000)  # long strings too
good_features = st.lists(st.floats(-3, 3, allow_nan=False), min_size=6, max_size=6)
features = st.one_of(
    good_features,
    good_features.map(lambda v: dict(zip(NAMES, v, strict=True))),
    any_json,
)
good_features = good_features | good_features.map(lambda v: dict(zip(NAMES, v, strict=True)))
# a valid record whose other fields are anything: it is scored, so its key and id reach the
# outputs and the alert gate (where an integer key raised AttributeError)
scorable = st.fixed_dictionaries(
    {"features": good_features},
    optional={"key": any_json, "id": any_json, "ts": st.integers(0, 2**41),
              "segment": any_json, "extra": any_json},
)  # fmt: skip
hostile = st.fixed_dictionaries(
    {"features": features},
    optional={"key": any_json, "id": any_json, "ts": any_json, "context": any_json,
              "segment": any_json},
)  # fmt: skip
record = scorable | hostile
message_value = st.one_of(
    record.map(dumps),
    st.lists(record, min_size=1, max_size=5).map(dumps),
    st.binary(max_size=200),
    any_json.map(dumps),
)
message_key = st.one_of(st.none(), st.binary(max_size=40), st.text(max_size=600).map(str.encode))
header_name = st.sampled_from(["acct", "tenant"]) | st.text(max_size=10)
headers = st.lists(st.tuples(header_name, st.binary(max_size=300)), max_size=3).map(tuple)
message = st.tuples(message_value, message_key, headers)


def _run(pipeline, raw: list[tuple[bytes, bytes | None, tuple]], topic: str):
    messages = [
        InboundMessage(topic, 0, i, value, key, 1_000, hdrs)
        for i, (value, key, hdrs) in enumerate(raw)
    ]
    source, sink = FakeSource(messages, batch=7), ListSink()
    config = RunnerConfig(
        poll_timeout_ms=1, dead_letter_topic="dlq", on_processing_error="fail",
        max_output_bytes=MAX_OUTPUT,
    )  # fmt: skip
    runner = ServiceRunner(
        source, sink, pipeline, ServiceMetrics(CollectorRegistry()), config, lambda: 10**12
    )
    stats = runner.run(max_messages=len(messages))
    assert stats.messages == len(messages)
    assert stats.consumed == stats.scored + stats.dead_lettered + sum(stats.unscored.values())
    assert "processing_error" not in stats.dead_letter_reasons
    assert source.committed == {(topic, 0): len(messages)}
    for out in sink.flushed:
        assert output_size(out) <= MAX_OUTPUT
        if out.topic in ("alerts", "scores"):
            record = orjson.loads(out.value)
            assert record["key"] is None or isinstance(record["key"], str)
            assert record.get("id") is None or isinstance(record["id"], str)
    return stats


@pytest.fixture(scope="module")
def feature_pipeline(small_bundle):
    config = PipelineConfig(
        alert_topic="alerts", dead_letter_topic="dlq", score_topic="scores",
        max_message_bytes=16_384, max_records_per_message=10, hygiene=GATE,
    )  # fmt: skip
    pipeline = build_feature_pipeline(TabularDetector(small_bundle), ModelRef("m", "1"), config)
    # header fields on: any header bytes become record fields through the adapter
    return InputAdapter(
        pipeline, dead_letter_topic="dlq", feature_names=NAMES,
        header_fields={"acct": "key", "tenant": "segment"}, max_bytes=16_384,
    )  # fmt: skip


@FUZZ
@seed(17)
@given(raw=st.lists(message, min_size=1, max_size=12))
def test_any_feature_message_through_handler_and_runner(feature_pipeline, raw):
    TRIED["features"] += len(raw)
    _run(feature_pipeline, raw, "in")


@pytest.fixture(scope="module")
def kpi_bundle():
    return make_kpi_bundle(window_len=8, epochs=3)


kpi_record = st.fixed_dictionaries(
    {},
    optional={"series": any_json | st.sampled_from(["cpu", "mem"]),
              "ts": json_scalar | st.integers(10**12, 10**12 + 10**6),
              "value": json_scalar, "id": any_json, "key": any_json},
)  # fmt: skip
kpi_message = st.tuples(
    st.one_of(kpi_record.map(dumps), st.lists(kpi_record, min_size=1, max_size=4).map(dumps),
              st.binary(max_size=100)),
    message_key,
    headers,
)  # fmt: skip


@FUZZ
@seed(19)
@given(raw=st.lists(kpi_message, min_size=1, max_size=12))
def test_any_kpi_message_through_handler_and_runner(kpi_bundle, raw):
    TRIED["kpi"] += len(raw)
    pipe = kpi_pipeline(
        WindowDetector(kpi_bundle), ModelRef("kpi", "1"),
        PipelineConfig(alert_topic="alerts", dead_letter_topic="dlq", score_topic="scores",
                       max_message_bytes=16_384, hygiene=GATE),
        KpiState(state_topic="state", max_series=8),
    )  # fmt: skip
    _run(pipe, raw, "kpi")
    assert len(pipe.input.store) <= 8 and len(pipe.input._applied) <= 8


def _npy(shape: tuple[int, ...], descr: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue() + data


npy_value = st.one_of(
    st.builds(
        _npy,
        st.lists(st.integers(0, 2**40), min_size=0, max_size=5).map(tuple),  # any declared size
        st.sampled_from(["|u1", "<f4", "<f8", "<i4", "|b1"]),
        st.binary(max_size=600),
    ),
    st.builds(
        _npy,
        st.sampled_from([(1, 16, 16), (2, 1, 16, 16), (1, 1, 16, 16)]),
        st.just("|u1"),
        st.sampled_from([bytes(256), bytes(512), bytes(255)]),
    ),
    st.binary(max_size=200).map(lambda b: b"\x93NUMPY" + b),
)
NPY_TYPE = ("content-type", b"application/x-npy")
image_headers = st.one_of(
    st.just((NPY_TYPE,)),
    st.binary(max_size=60).map(lambda ids: (NPY_TYPE, ("ids", ids))),
    any_json.map(lambda ids: (("ids", dumps(ids)),)),
)
image_message = st.tuples(npy_value, message_key, image_headers)


@pytest.fixture(scope="module")
def image_pipeline(tmp_path_factory):
    from streamvae.bundle.image import ImageDetector
    from streamvae.service.images import ImageMaps, image_pipeline
    from tests.factories import make_image_bundle

    config = PipelineConfig(
        alert_topic="alerts", dead_letter_topic="dlq", score_topic="scores",
        max_message_bytes=65_536, max_records_per_message=16, hygiene=GATE,
    )  # fmt: skip
    maps = ImageMaps(map_dir=str(tmp_path_factory.mktemp("maps")), map_max_files=5)
    detector = ImageDetector(make_image_bundle(epochs=2))
    return image_pipeline(detector, ModelRef("img", "1"), config, maps)


@FUZZ
@seed(23)
@given(raw=st.lists(image_message, min_size=1, max_size=8))
def test_any_image_message_through_handler_and_runner(image_pipeline, raw):
    TRIED["images"] += len(raw)
    _run(image_pipeline, raw, "img")
