"""The fast path of FeatureReader reads exactly what the record-by-record path reads.

``read`` takes a flat path for messages that are valid as they are and hands anything else to
``read_exact``; whatever a batch mixes, the rows and dead letters must equal those of reading
every message with ``read_exact`` alone. A second set of tests checks that clean messages of
every shape do take the fast path (a fast path that always bails out passes the first set).
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamvae.data.schema import ContextSchema, FeatureSchema
from streamvae.service.feature_rows import FeatureReader, FeatureRows
from streamvae.service.outcome import MAX_TS_MS, BatchOutcome
from streamvae.types import InboundMessage
from tests.factories import feature_names

NAMES = feature_names(4)
SCHEMA = FeatureSchema(NAMES)
CONTEXT = ContextSchema(numeric=("hour",), categorical=(("channel", ("web", "app")),))
MAX_BYTES, MAX_RECORDS = 2_000, 5


def reader(context: ContextSchema | None = None) -> FeatureReader:
    return FeatureReader(
        SCHEMA, context, max_bytes=MAX_BYTES, max_records=MAX_RECORDS, dead_letter_topic="dlq"
    )


def messages(values: list[bytes | None], timestamp: int | None = 1_000) -> list[InboundMessage]:
    return [InboundMessage("in", i % 2, i, v, b"k", timestamp) for i, v in enumerate(values)]


def snapshot(rows: FeatureRows, outcome: BatchOutcome) -> dict[str, object]:
    return {
        "features": rows.features().tolist(),
        "contexts": rows.contexts,
        "records": rows.records,
        "sources": [(m.offset, i) for m, i in rows.sources],
        "ts": rows.ts,
        "consumed": outcome.records_consumed,
        "dead": dict(outcome.dead_letters),
        "outbound": [(m.topic, m.value, m.key, m.headers) for m in outcome.outbound],
    }


def both_paths(
    values: list[bytes | None], context: ContextSchema | None = None
) -> tuple[dict[str, object], dict[str, object]]:
    inbound = messages(values)
    fast_outcome = BatchOutcome()
    fast = snapshot(reader(context).read(inbound, fast_outcome), fast_outcome)
    exact_rows, exact_outcome = FeatureRows(SCHEMA.dim), BatchOutcome()
    for message in inbound:
        reader(context).read_exact(message, exact_rows, exact_outcome)
    return fast, snapshot(exact_rows, exact_outcome)


number = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.integers(-(10**6), 10**6))
odd_value = st.one_of(
    st.booleans(), st.none(), st.text(max_size=3), st.just(1e300), st.integers(2**63, 2**64 - 1)
)
named = st.fixed_dictionaries({n: number for n in NAMES})
features = st.one_of(
    named,
    named.map(lambda d: dict(reversed(d.items()))),  # right names, another order
    st.lists(number, min_size=4, max_size=4),
    st.lists(st.one_of(number, odd_value), min_size=3, max_size=5),
    st.dictionaries(st.sampled_from([*NAMES, "x9"]), st.one_of(number, odd_value), max_size=5),
    odd_value,
)
ts = st.one_of(
    st.none(), st.integers(0, MAX_TS_MS), st.integers(-5, -1), st.just(MAX_TS_MS + 1),
    st.floats(0, 10), st.text(max_size=2),
)  # fmt: skip
context = st.one_of(
    st.fixed_dictionaries({"hour": number, "channel": st.sampled_from(["web", "app"])}),
    st.fixed_dictionaries({"hour": st.one_of(number, odd_value), "channel": st.text(max_size=4)}),
    st.none(),
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, object]:
    record: dict[str, object] = {"id": draw(st.text(max_size=3)), "features": draw(features)}
    if (value := draw(ts)) is not None:
        record["ts"] = value
    if (value := draw(context)) is not None:
        record["context"] = value
    if draw(st.booleans()):
        del record["features"]
    return record


message_value = st.one_of(
    records().map(orjson.dumps),
    st.lists(records(), min_size=0, max_size=MAX_RECORDS + 1).map(orjson.dumps),
    st.lists(st.one_of(records(), st.integers(-9, 9), st.none()), max_size=3).map(orjson.dumps),
    st.sampled_from([None, b"", b" ", b"null", b"{", b"\xff", b"[1, 2]", b'"x"', b"{}"]),
    st.just(b'{"features": [' + b"1, " * 1_000 + b"1]}"),  # over max_bytes
    records().map(lambda r: json.dumps({**r, "nan": float("nan")}).encode()),
)
PROPERTY = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY
@given(st.lists(message_value, max_size=8))
def test_read_equals_the_exact_path_whatever_the_batch_mixes(values):
    fast, exact = both_paths(values)
    assert fast == exact


@PROPERTY
@given(st.lists(message_value, max_size=8))
def test_read_equals_the_exact_path_for_a_conditional_model(values):
    fast, exact = both_paths(values, CONTEXT)
    assert fast == exact


def test_one_bad_element_of_a_batch_dead_letters_it_alone():
    good = [{"id": str(i), "features": [float(i)] * 4} for i in range(4)]
    batch = [good[0], good[1], {"id": "bad", "features": [1.0, True, 2.0, 3.0]}, good[2]]
    values = [orjson.dumps(good[3]), orjson.dumps(batch)]
    outcome = BatchOutcome()
    rows = reader().read(messages(values), outcome)
    assert [r["id"] for r in rows.records] == ["3", "0", "1", "2"], "rolled back, read once"
    assert [(m.offset, i) for m, i in rows.sources] == [(0, 0), (1, 0), (1, 1), (1, 3)]
    assert outcome.records_consumed == 5
    assert dict(outcome.dead_letters) == {"invalid_record": 1}
    assert dict(outcome.outbound[0].headers)["source"] == b"in:1:1:2"


def test_event_time_is_the_records_ts_else_the_message_timestamp_else_zero():
    values = [orjson.dumps({"features": [1] * 4, "ts": 7}), orjson.dumps({"features": [1] * 4})]
    assert reader().read(messages(values), BatchOutcome()).ts == [7, 1_000]
    assert reader().read(messages(values, timestamp=None), BatchOutcome()).ts == [7, 0]


@pytest.mark.parametrize(
    "value",
    [
        {"features": dict(zip(NAMES, [1.0, 2.0, 3.0, 4.0], strict=True)), "ts": 5},
        {"features": dict(zip(reversed(NAMES), [4.0, 3.0, 2.0, 1.0], strict=True))},
        {"features": [1.0, 2, 3.0, 4.0], "id": "x", "extra": {"any": "thing"}},
        [{"features": [1.0, 2.0, 3.0, 4.0]}] * MAX_RECORDS,
    ],
    ids=["named", "named-reordered", "list", "batch"],
)
def test_clean_messages_take_the_fast_path(monkeypatch, value):
    def exact(*args, **kwargs):
        raise AssertionError("a clean message went to the exact path")

    fast = reader()
    monkeypatch.setattr(fast, "read_exact", exact)
    rows = fast.read(messages([orjson.dumps(value)]), BatchOutcome())
    assert rows.features().tolist() == [[1.0, 2.0, 3.0, 4.0]] * len(rows)


def test_conditional_records_take_the_fast_path(monkeypatch):
    fast = reader(CONTEXT)
    monkeypatch.setattr(fast, "read_exact", lambda *a: pytest.fail("exact path taken"))
    value = {"features": [1.0] * 4, "context": {"hour": 3, "channel": "app", "shop": "s1"}}
    rows = fast.read(messages([orjson.dumps(value)]), BatchOutcome())
    assert rows.contexts == [[3, 1]]


def test_named_features_keep_their_values_across_key_orders(monkeypatch):
    fast = reader()
    monkeypatch.setattr(fast, "read_exact", lambda *a: pytest.fail("exact path taken"))
    row = dict(zip(NAMES, [1.0, 2.0, 3.0, 4.0], strict=True))
    reordered = dict(reversed(row.items()))
    values = [orjson.dumps({"features": f}) for f in (row, row, reordered, row, reordered)]
    rows = fast.read(messages(values), BatchOutcome())
    assert rows.features().tolist() == [[1.0, 2.0, 3.0, 4.0]] * 5
