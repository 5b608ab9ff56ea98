from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from streamvae.data import load_builtin, load_table, novelty_split
from streamvae.errors import DataError


def _frame() -> pl.DataFrame:
    return pl.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6], "label": [0, 0, 1]})


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_csv_and_parquet(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    _frame().write_csv(path) if suffix == ".csv" else _frame().write_parquet(path)
    table = load_table(path)
    assert table.names == ("a", "b")
    assert table.features.dtype == np.float32
    assert table.features.tolist() == [[1, 4], [2, 5], [3, 6]]
    assert table.labels.tolist() == [0, 0, 1]
    assert len(table.normal_only()) == 2


def test_feature_columns_pick_and_order(tmp_path):
    path = tmp_path / "d.csv"
    _frame().write_csv(path)
    table = load_table(path, feature_columns=("b", "a"))
    assert table.names == ("b", "a")
    assert table.features[0].tolist() == [4, 1]


def test_npz_with_and_without_labels(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.ones((4, 2)), y=np.array([0, 1, 0, 0]))
    table = load_table(path)
    assert table.names == ("f00", "f01")
    assert table.labels.tolist() == [0, 1, 0, 0]
    np.savez(path, X=np.ones((4, 2)))
    assert load_table(path).labels is None


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pl.DataFrame({"a": ["x", "y"], "label": [0, 1]}), "non-numeric type"),
        (pl.DataFrame({"a": [1.0, None], "label": [0, 1]}), "1 missing value"),
        (pl.DataFrame({"a": [1.0, 2.0], "label": [0, 2]}), "0 \\(normal\\) or 1"),
    ],
)
def test_bad_csv_content_names_the_problem(tmp_path, frame, message):
    path = tmp_path / "bad.csv"
    frame.write_csv(path)
    with pytest.raises(DataError, match=message):
        load_table(path)


def test_missing_file_unknown_suffix_and_missing_column(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_table(tmp_path / "nope.csv")
    (tmp_path / "d.txt").write_text("a\n1\n")
    with pytest.raises(DataError, match="unsupported data file"):
        load_table(tmp_path / "d.txt")
    path = tmp_path / "d.csv"
    _frame().write_csv(path)
    with pytest.raises(DataError, match=r"\['zz'\] not found"):
        load_table(path, feature_columns=("zz",))
    np.savez(tmp_path / "bad.npz", Z=np.ones(3))
    with pytest.raises(DataError, match="needs an array 'X'"):
        load_table(tmp_path / "bad.npz")


def test_builtin_cardio_ships_with_the_package():
    table = load_builtin("cardio")
    assert table.features.shape == (1831, 21)
    assert int(table.labels.sum()) == 176
    with pytest.raises(DataError, match="available"):
        load_builtin("nope")


def test_novelty_split_is_seeded_and_disjoint():
    labels = np.array([0] * 90 + [1] * 10, dtype=np.int8)
    a = novelty_split(labels, seed=1, calibration_fraction=0.2)
    b = novelty_split(labels, seed=1, calibration_fraction=0.2)
    assert np.array_equal(a.train, b.train)
    assert len(a.train) == 54 and len(a.calibration) == 18
    assert set(a.train).isdisjoint(a.test) and set(a.calibration).isdisjoint(a.test)
    assert labels[a.train].sum() == 0 and labels[a.calibration].sum() == 0
    assert labels[a.test].sum() == 10
    assert not np.array_equal(a.train, novelty_split(labels, seed=2).train)
