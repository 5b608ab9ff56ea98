from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamvae.errors import PayloadDecodeError
from streamvae.stream.codecs import decode_json, encode_json, split_records


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "invalid_json"),
        (b"", "invalid_json"),
        (b"   ", "invalid_json"),
        (b"{not json", "invalid_json"),
        (b'{"a": 1', "invalid_json"),
        (json.dumps({"features": [float("nan")]}).encode(), "non_finite"),
        (b'{"features": [Infinity]}', "non_finite"),
        (b'{"a": "\xff\xfe"}', "invalid_encoding"),
        (b"[" + b"1," * 600 + b"1]", "too_large"),
    ],
)
def test_decode_failures_carry_a_reason(value, reason):
    with pytest.raises(PayloadDecodeError) as info:
        decode_json(value, max_bytes=1000)
    assert info.value.reason == reason
    assert info.value.detail


def test_split_records():
    assert split_records({"a": 1}, max_records=5) == [{"a": 1}]
    assert split_records([{"a": 1}, 2], max_records=5) == [{"a": 1}, 2]
    for payload, reason in (([], "invalid_record"), (3, "invalid_record"), ([{}] * 6, "too_large")):
        with pytest.raises(PayloadDecodeError) as info:
            split_records(payload, max_records=5)
        assert info.value.reason == reason


def test_encode_round_trip():
    import numpy as np

    assert json.loads(encode_json({"s": np.float64(1.5), "v": [1, 2]})) == {"s": 1.5, "v": [1, 2]}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_only_ever_raise_payload_errors(value):
    try:
        split_records(decode_json(value, max_bytes=1500), max_records=100)
    except PayloadDecodeError as exc:
        known = {"invalid_json", "invalid_encoding", "non_finite", "too_large", "invalid_record"}
        assert exc.reason in known  # noqa: PT017 (not every input fails)
