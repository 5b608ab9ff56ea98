from __future__ import annotations

import numpy as np
import pytest

from streamvae.data import FeatureSchema, StandardScaler, finite_rows
from streamvae.errors import PayloadDecodeError, SchemaMismatchError

SCHEMA = FeatureSchema(("a", "b", "c"))


def test_vector_from_mapping_in_schema_order():
    assert SCHEMA.vector({"c": 3, "a": 1.5, "b": -2}) == [1.5, -2, 3]


def test_vector_from_list():
    assert SCHEMA.vector([1, 2, 3.5]) == [1, 2, 3.5]


@pytest.mark.parametrize(
    ("features", "reason", "detail"),
    [
        ({"a": 1, "b": 2}, "schema_mismatch", "missing feature"),
        ({"a": 1, "b": 2, "c": 3, "d": 4}, "schema_mismatch", "unexpected feature"),
        ([1, 2], "schema_mismatch", "expected 3 feature values, got 2"),
        ({"a": 1, "b": "2", "c": 3}, "invalid_record", "'b' must be a number"),
        ({"a": 1, "b": True, "c": 3}, "invalid_record", "'b' must be a number"),
        ({"a": 1, "b": None, "c": 3}, "invalid_record", "'b' must be a number"),
        ([1, 2, [3]], "invalid_record", "'c' must be a number"),
        ("1,2,3", "invalid_record", "object or a list"),
    ],
)
def test_vector_rejects_with_reason(features, reason, detail):
    with pytest.raises(PayloadDecodeError, match=detail) as info:
        SCHEMA.vector(features)
    assert info.value.reason == reason


def test_schema_validation():
    with pytest.raises(ValueError, match="duplicate"):
        FeatureSchema(("a", "a"))
    with pytest.raises(ValueError, match="at least one"):
        FeatureSchema(())
    assert FeatureSchema.from_dict(SCHEMA.to_dict()) == SCHEMA
    SCHEMA.check_columns(("c", "b", "a"))
    with pytest.raises(SchemaMismatchError, match=r"missing \['c'\], unexpected \['z'\]"):
        SCHEMA.check_columns(("a", "b", "z"))


def test_finite_rows():
    m = np.array([[1, 2], [np.nan, 1], [np.inf, 0]], dtype=np.float32)
    assert finite_rows(m).tolist() == [True, False, False]


def test_scaler_standardises_and_inverts():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 3)) * [1, 10, 100] + [0, 5, -5]).astype(np.float32)
    x[:, 2] = 7.0  # a constant feature keeps scale 1
    scaler = StandardScaler.fit(x)
    z = scaler.transform(x)
    assert np.allclose(z[:, :2].mean(0), 0, atol=1e-4)
    assert np.allclose(z[:, :2].std(0), 1, atol=1e-3)
    assert np.all(z[:, 2] == 0)
    assert np.allclose(scaler.inverse_transform(z), x, atol=1e-3)
    assert StandardScaler.from_dict(scaler.to_dict()) == scaler


def test_scaler_refuses_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        StandardScaler.fit(np.zeros((0, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        StandardScaler.fit(np.array([[np.nan]], np.float32))
    with pytest.raises(ValueError, match="positive scales"):
        StandardScaler.from_dict({"mean": [0.0], "scale": [0.0]})
