"""Tables larger than memory: read in chunks, write results chunk by chunk.

CSV and Parquet are scanned lazily by polars' streaming engine (``collect_batches``), so
memory holds one chunk at a time whatever the file's size; an NPZ is an in-memory array
format and is sliced. Results go to Parquet (one row group per chunk) or CSV (appended).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import polars as pl

from streamvae.errors import DataError

INPUT_SUFFIXES = (".csv", ".parquet", ".pq", ".npz", ".npy")  # a folder: image files
OUTPUT_SUFFIXES = (".csv", ".parquet", ".pq")


def _scan(path: Path) -> pl.LazyFrame:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pl.scan_csv(path, infer_schema_length=10_000)
    return pl.scan_parquet(path)


def _npz_chunks(path: Path, chunk_rows: int) -> Iterator[pl.DataFrame]:
    with np.load(path, allow_pickle=False) as npz:
        if "X" not in npz:
            msg = f"{path}: an .npz input needs an array 'X'; has {list(npz)}"
            raise DataError(msg)
        x = np.asarray(npz["X"])
        names = (
            [str(n) for n in npz["feature_names"]]
            if "feature_names" in npz
            else [f"f{i:02d}" for i in range(x.shape[1] if x.ndim == 2 else 0)]
        )
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        msg = f"{path}: 'X' must be a numeric (n, d) array, got {x.dtype} {x.shape}"
        raise DataError(msg)
    for start in range(0, x.shape[0], chunk_rows):
        block = x[start : start + chunk_rows]
        frame = pl.DataFrame(block, schema=names, orient="row")
        yield frame.with_columns(pl.int_range(start, start + block.shape[0]).alias("row"))


def check_paths(source: str | Path, output: str | Path) -> None:
    """Refuse a missing or unsupported input, or an unwritable output, before any work.

    Raises:
        DataError: naming the bad path.
    """
    path = Path(source)
    if not path.exists():
        msg = f"input file {str(path)!r} does not exist"
        raise DataError(msg)
    if path.is_file() and path.suffix.lower() not in INPUT_SUFFIXES:
        msg = f"unsupported input {str(path)!r}: use one of {INPUT_SUFFIXES}"
        raise DataError(msg)
    out = Path(output)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        msg = f"unsupported output {str(out)!r}: use one of {OUTPUT_SUFFIXES}"
        raise DataError(msg)
    if not out.parent.is_dir():
        msg = f"output folder {str(out.parent)!r} does not exist"
        raise DataError(msg)


def read_chunks(path: str | Path, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """The rows of ``path`` in chunks of at most ``chunk_rows``, in file order.

    An NPZ's rows (``X``, columns named by ``feature_names`` or ``f00``, ``f01``...) come
    with a ``row`` column (the row number) to identify them.

    Raises:
        DataError: a missing file, an unknown suffix, or a file polars cannot read.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"input file {str(path)!r} does not exist"
        raise DataError(msg)
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        msg = f"unsupported input {str(path)!r}: use one of {INPUT_SUFFIXES}"
        raise DataError(msg)
    if suffix == ".npz":
        yield from _npz_chunks(path, chunk_rows)
        return
    try:
        batches = _scan(path).collect_batches(chunk_size=chunk_rows)
        for batch in batches:
            if batch.height:
                yield batch
    except (pl.exceptions.PolarsError, OSError) as exc:
        msg = f"cannot read {str(path)!r}: {exc}"
        raise DataError(msg) from exc


class ChunkWriter:
    """Appends frames of one schema to a Parquet (a row group each) or CSV file.

    Use as a context manager; the file is complete once it is closed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in OUTPUT_SUFFIXES:
            msg = f"unsupported output {str(self.path)!r}: use one of {OUTPUT_SUFFIXES}"
            raise DataError(msg)
        if not self.path.parent.is_dir():
            msg = f"output folder {str(self.path.parent)!r} does not exist"
            raise DataError(msg)
        self.parquet = suffix != ".csv"
        self.rows = 0
        self._writer: Any = None
        self._file: IO[bytes] | None = None

    def write(self, frame: pl.DataFrame) -> None:
        """Append ``frame`` (every frame must have the first one's columns and types)."""
        if self.parquet:
            import pyarrow.parquet as pq  # polars writes whole files only

            table = frame.to_arrow()
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._writer.write_table(table)
        else:
            if self._file is None:
                self._file = self.path.open("wb")
                frame.write_csv(self._file, include_header=True)
            else:
                frame.write_csv(self._file, include_header=False)
        self.rows += frame.height

    def close(self) -> None:
        """Finish the file (an input without rows still gets a valid, empty output)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
