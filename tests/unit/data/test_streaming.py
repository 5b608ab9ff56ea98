"""Streaming pieces: Parquet in batches, running moments, row hashes, shuffle, bottom-k."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from streamvae.data.schema import StandardScaler
from streamvae.data.streaming import (
    BottomK,
    ParquetRows,
    RunningMoments,
    ShuffleBuffer,
    parquet_files,
    row_fraction,
)
from streamvae.errors import DataError


def test_running_moments_equal_the_one_pass_scaler_whatever_the_batching():
    x = np.random.default_rng(0).normal(5.0, 3.0, size=(1000, 4)).astype(np.float32)
    x[:, 3] = 7.0  # a constant feature keeps scale 1
    moments, other = RunningMoments(), RunningMoments()
    for part in np.array_split(x[:600], 7):
        moments.update(part)
    other.update(x[600:])
    moments.merge(other)  # another worker's moments
    assert moments.count == 1000
    expected = StandardScaler.fit(x)
    assert np.allclose(moments.scaler().mean, expected.mean, atol=1e-9)
    assert np.allclose(moments.scaler().scale, expected.scale, rtol=1e-9)
    with pytest.raises(ValueError, match="no rows"):
        RunningMoments().scaler()


def test_row_fractions_are_stable_seeded_and_uniform():
    x = np.random.default_rng(1).normal(size=(20_000, 5)).astype(np.float32)
    f = row_fraction(x, seed=3)
    assert np.array_equal(f[100:200], row_fraction(x[100:200], seed=3)), "batch-independent"
    assert not np.array_equal(f, row_fraction(x, seed=4)), "the seed matters"
    assert f.min() >= 0.0 and f.max() < 1.0
    share = (f < 0.2).mean()
    assert abs(share - 0.2) < 0.015
    counts, _ = np.histogram(f, bins=10, range=(0, 1))
    assert counts.min() > 1700 and counts.max() < 2300


def test_the_shuffle_buffer_emits_every_row_once_and_shuffles():
    stream = [np.arange(i, i + 100, dtype=np.float32)[:, None] for i in range(0, 1000, 100)]
    buffer = ShuffleBuffer(capacity=256, batch_size=32, seed=0)
    out = list(buffer.batches(stream))
    rows = np.concatenate(out)[:, 0]
    assert sorted(rows.tolist()) == list(range(1000))
    assert all(b.shape[0] <= 32 for b in out)
    assert not np.array_equal(rows, np.arange(1000)), "shuffled"
    again = np.concatenate(list(ShuffleBuffer(256, 32, seed=0).batches(stream)))[:, 0]
    assert np.array_equal(rows, again), "seeded"
    with pytest.raises(ValueError, match="too small"):
        ShuffleBuffer(capacity=40, batch_size=32, seed=0)


def test_bottom_k_keeps_the_rows_with_the_smallest_keys():
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(5000, 2))
    keys = rng.random(5000)
    sample = BottomK(100)
    for part in range(0, 5000, 333):
        sample.add(rows[part : part + 333], keys[part : part + 333])
    expected = rows[np.argsort(keys)[:100]]
    assert np.array_equal(sample.result(), expected)
    assert BottomK(5).result().size == 0


def test_merged_bottom_k_samples_are_the_sample_of_the_union():
    rng = np.random.default_rng(3)
    rows, keys = rng.normal(size=(3000, 2)), rng.random(3000)
    shares = [BottomK(50) for _ in range(3)]
    for i, share in enumerate(shares):  # one worker's rows each
        share.add(rows[i * 1000 : (i + 1) * 1000], keys[i * 1000 : (i + 1) * 1000])
    merged = BottomK(50)
    for share in shares:
        merged.merge(share)
    assert np.array_equal(merged.result(), rows[np.argsort(keys)[:50]])


def test_parts_of_parquet_rows_read_every_row_once_in_equal_shares(tmp_path):
    for i, n in enumerate((250, 40, 333)):  # uneven files, several row groups
        a = np.arange(n, dtype=np.float64) + 1000 * i
        pl.DataFrame({"a": a}).write_parquet(tmp_path / f"p{i}.parquet", row_group_size=64)
    rows = ParquetRows.open(tmp_path, batch_rows=50)
    every = np.concatenate([x for x, _ in rows.batches()])[:, 0]
    assert rows.count() == every.shape[0] == 623
    shares = [np.concatenate([x for x, _ in rows.part(r, 3).batches()])[:, 0] for r in range(3)]
    assert [s.shape[0] for s in shares] == [207, 208, 208]
    assert np.array_equal(np.concatenate(shares), every), "contiguous shares, in file order"
    assert rows.part(0, 1) is rows


def test_parquet_rows_read_a_directory_or_glob_in_batches(tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(3):
        frame = pl.DataFrame(
            {"a": np.arange(i * 100, (i + 1) * 100, dtype=np.float64), "b": np.ones(100),
             "label": [0] * 99 + [1], "name": ["x"] * 100}
        )  # fmt: skip
        frame.write_parquet(parts / f"p{i}.parquet")
    rows = ParquetRows.open(parts, batch_rows=64)
    assert rows.names == ("a", "b"), "numeric columns but the label"
    got = list(rows.batches())
    assert all(x.shape[0] <= 64 for x, _ in got)
    x = np.concatenate([x for x, _ in got])
    y = np.concatenate([y for _, y in got if y is not None])
    assert sorted(x[:, 0].tolist()) == list(range(300)) and int(y.sum()) == 3
    assert len(parquet_files(str(parts / "p*.parquet"))) == 3
    with pytest.raises(DataError, match="no Parquet file"):
        parquet_files(tmp_path / "nothing")
    with pytest.raises(DataError, match=r"feature column\(s\) \['c'\]"):
        ParquetRows.open(parts, feature_columns=("a", "c"))
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="as Parquet"):
        ParquetRows.open(str(tmp_path / "*.csv"))
