"""Training data larger than memory: Parquet read batch by batch, and what a stream needs.

- :class:`ParquetRows` reads a Parquet file, a directory or a glob of them in batches of
  rows (polars' streaming engine: memory bounded by a batch, not the data); ``part`` gives
  each worker of a distributed run its own contiguous share of the rows to read.
- :class:`RunningMoments` fits the scaler in one pass (mergeable mean and variance, so
  batches or workers combine exactly).
- :func:`row_fraction` gives every row a seeded number in [0, 1) from its values alone:
  splits taken by it (validation, calibration) are the same across runs, batch sizes and
  workers, with no index to keep.
- :class:`ShuffleBuffer` shuffles a stream of batches within a bounded, seeded buffer.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from streamvae.data.schema import StandardScaler
from streamvae.errors import DataError

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def is_glob(path: str) -> bool:
    """Whether ``path`` is a pattern (``*``, ``?``, ``[``) rather than one file or folder."""
    return any(c in path for c in "*?[")


def parquet_files(source: str | Path) -> list[str]:
    """The Parquet files of ``source``: a file, a directory (searched recursively) or a glob.

    Raises:
        DataError: no Parquet file there.
    """
    text = str(source)
    path = Path(text)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*.parquet"))
    elif is_glob(text):
        files = sorted(glob.glob(text, recursive=True))  # noqa: PTH207 - absolute patterns
    else:
        files = [text] if path.is_file() else []
    if not files:
        msg = f"no Parquet file at {text!r} (a file, a directory of them, or a glob)"
        raise DataError(msg)
    return files


@dataclass(frozen=True, slots=True)
class ParquetRows:
    """The feature rows (and labels) of Parquet data, read in batches.

    Attributes:
        files: the Parquet files, read in this order.
        names: the feature columns, in model order.
        label_column: the label column (1 = anomaly), or ``None``.
        batch_rows: rows per batch (the memory a batch takes is about
            ``batch_rows * len(names) * 8`` bytes).
        offset, length: the rows read, as a slice of all the files' rows in order
            (``length`` ``None``: to the end); see :meth:`part`.
    """

    files: tuple[str, ...]
    names: tuple[str, ...]
    label_column: str | None = None
    batch_rows: int = 65_536
    offset: int = 0
    length: int | None = None

    @classmethod
    def open(
        cls,
        source: str | Path,
        *,
        label_column: str = "label",
        feature_columns: tuple[str, ...] | None = None,
        batch_rows: int = 65_536,
    ) -> ParquetRows:
        """The numeric columns of ``source`` (all but the label, or ``feature_columns``).

        Raises:
            DataError: no files, files that are not Parquet, a missing column, or no numeric
                feature column.
        """
        files = tuple(parquet_files(source))
        try:
            schema = pl.scan_parquet(list(files)).collect_schema()
        except (pl.exceptions.PolarsError, OSError) as exc:
            msg = f"cannot read {files[0]!r} (and {len(files) - 1} more) as Parquet: {exc}"
            raise DataError(msg) from exc
        label = label_column if label_column in schema else None
        if feature_columns is not None:
            missing = [c for c in feature_columns if c not in schema]
            if missing:
                msg = f"feature column(s) {missing} not in {files[0]!r}"
                raise DataError(msg)
            names = tuple(feature_columns)
        else:
            names = tuple(c for c, t in schema.items() if c != label and t.is_numeric())
        if not names:
            msg = f"no numeric feature column in {files[0]!r}"
            raise DataError(msg)
        return cls(files, names, label, batch_rows)

    def count(self) -> int:
        """The number of rows of all the files (from their metadata: nothing is read)."""
        return int(pl.scan_parquet(list(self.files)).select(pl.len()).collect().item())

    def part(self, index: int, parts: int) -> ParquetRows:
        """Share ``index`` of ``parts`` contiguous, equal (to a row) shares of the rows.

        Worker ``index`` of a distributed run reads only its share: polars skips the row
        groups before it and stops after it, so the shares together read the data once.
        """
        if parts == 1:
            return self
        total = self.count()
        start, end = total * index // parts, total * (index + 1) // parts
        return replace(self, offset=start, length=end - start)

    def batches(self) -> Iterator[tuple[F32, npt.NDArray[np.int8] | None]]:
        """``(features (n, d) float32, labels or None)`` batch after batch, in file order."""
        columns = [*self.names, *([self.label_column] if self.label_column else [])]
        frames = pl.scan_parquet(list(self.files)).select(columns)
        if self.offset or self.length is not None:
            frames = frames.slice(self.offset, self.length)
        for frame in frames.collect_batches(chunk_size=self.batch_rows):
            if frame.height == 0:
                continue
            x = frame.select(self.names).to_numpy().astype(np.float32, copy=False)
            y = None
            if self.label_column is not None:
                y = frame[self.label_column].fill_null(0).to_numpy().astype(np.int8)
            yield x, y


@dataclass(slots=True)
class RunningMoments:
    """Per-feature count, mean and sum of squared deviations, updated batch by batch.

    Chan et al.'s pairwise update, in float64: the result equals the one-pass mean and
    (population) variance of all the rows seen, whatever the batching.
    """

    count: int = 0
    mean: F64 = field(default_factory=lambda: np.zeros(0))
    m2: F64 = field(default_factory=lambda: np.zeros(0))

    def update(self, x: F32) -> None:
        """Add the rows of ``x (n, d)``."""
        if x.shape[0] == 0:
            return
        batch = x.astype(np.float64)
        n = batch.shape[0]
        mean = batch.mean(axis=0)
        m2 = ((batch - mean) ** 2).sum(axis=0)
        self.merge(RunningMoments(n, mean, m2))

    def merge(self, other: RunningMoments) -> None:
        """Add ``other``'s rows (another batch, or another worker's moments)."""
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean.copy(), other.m2.copy()
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        self.count = total

    def scaler(self) -> StandardScaler:
        """The :class:`StandardScaler` of the rows seen (constant features: scale 1).

        Raises:
            ValueError: no rows seen.
        """
        if self.count == 0:
            msg = "no rows to fit a scaler on"
            raise ValueError(msg)
        std = np.sqrt(self.m2 / self.count)
        scale = np.where(std > 1e-12, std, 1.0)
        return StandardScaler(tuple(float(v) for v in self.mean), tuple(float(v) for v in scale))


_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(h: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX[0]
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX[1]
    return h ^ (h >> np.uint64(31))


def row_fraction(x: F32, seed: int) -> F64:
    """A seeded number in [0, 1) for each row of ``x``, from its float32 values alone.

    SplitMix64 over the values' bits: the same row gets the same number in every run,
    batch and worker, and distinct rows spread uniformly, so ``fraction < 0.2`` picks a
    stable 20 % of the rows. Rows with identical values share their number.

    >>> x = np.arange(12, dtype=np.float32).reshape(4, 3)
    >>> bool(np.array_equal(row_fraction(x, 0), row_fraction(x[::-1], 0)[::-1]))
    True
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(x.shape[0], np.uint64(seed) * _GOLDEN + _GOLDEN, dtype=np.uint64)
        for j in range(bits.shape[1]):
            h = _splitmix(h ^ bits[:, j])
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class ShuffleBuffer:
    """Rows of a stream of batches, shuffled within a seeded buffer of ``capacity`` rows.

    The buffer fills to ``capacity``, is shuffled, and its first half goes out in
    mini-batches of ``batch_size``; at the end of the stream the rest is shuffled and
    goes out too. Each row comes out exactly once; memory stays about ``capacity`` rows.
    """

    def __init__(self, capacity: int, batch_size: int, seed: int) -> None:
        if capacity < 2 * batch_size:
            msg = f"a shuffle buffer of {capacity} rows is too small for batches of {batch_size}"
            raise ValueError(msg)
        self.capacity, self.batch_size = capacity, batch_size
        self.rng = np.random.default_rng(seed)

    def batches(self, stream: Iterable[F32]) -> Iterator[F32]:
        """Mini-batches of the stream's rows, shuffled."""
        held: list[F32] = []
        count = 0
        for rows in stream:
            held.append(rows)
            count += rows.shape[0]
            if count >= self.capacity:
                buffer = np.concatenate(held)
                buffer = buffer[self.rng.permutation(buffer.shape[0])]
                cut = buffer.shape[0] // 2 // self.batch_size * self.batch_size
                yield from self._split(buffer[:cut])
                held, count = [buffer[cut:]], buffer.shape[0] - cut
        if count:
            buffer = np.concatenate(held)
            yield from self._split(buffer[self.rng.permutation(buffer.shape[0])])

    def _split(self, rows: F32) -> Iterator[F32]:
        for start in range(0, rows.shape[0], self.batch_size):
            yield rows[start : start + self.batch_size]


class BottomK:
    """The ``k`` rows with the smallest keys seen so far (a stable, bounded sample).

    With :func:`row_fraction` as the key this is a uniform sample of the stream that is the
    same in every run and every batching: the rows whose hash is among the ``k`` smallest.
    Memory stays under ``2 k`` rows.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.rows: list[np.ndarray] = []
        self.keys: list[F64] = []
        self._held = 0

    def add(self, rows: np.ndarray, keys: F64) -> None:
        """Offer ``rows`` with their ``keys``."""
        if rows.shape[0] == 0:
            return
        self.rows.append(rows)
        self.keys.append(keys)
        self._held += rows.shape[0]
        if self._held > 2 * self.k:
            self._shrink()

    def merge(self, other: BottomK) -> None:
        """Offer ``other``'s kept rows (another worker's sample): the union's ``k`` smallest."""
        for rows, keys in zip(other.rows, other.keys, strict=True):
            self.add(rows, keys)

    def _shrink(self) -> None:
        rows, keys = np.concatenate(self.rows), np.concatenate(self.keys)
        if keys.shape[0] > self.k:
            keep = np.argpartition(keys, self.k - 1)[: self.k]
            rows, keys = rows[keep], keys[keep]
        self.rows, self.keys, self._held = [rows], [keys], rows.shape[0]

    def result(self) -> np.ndarray:
        """The kept rows, in key order (empty when nothing was offered)."""
        if not self.rows:
            return np.zeros(0)
        self._shrink()
        order = np.argsort(self.keys[0], kind="stable")
        return self.rows[0][order]
