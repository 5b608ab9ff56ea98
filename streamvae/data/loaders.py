"""Readers for tabular data: CSV and Parquet through polars, NPZ through numpy."""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from streamvae.errors import DataError

TABULAR_SUFFIXES = (".csv", ".parquet", ".pq", ".npz")
BUILTIN_DATASETS = {"cardio": "6_cardio.npz"}


@dataclass(frozen=True, slots=True)
class Table:
    """A loaded tabular data set.

    Attributes:
        features: ``(n, d)`` float32 feature matrix (raw units, may hold NaN if the file did).
        names: the ``d`` feature names, in column order.
        labels: ``(n,)`` int8 labels (1 = anomaly) or ``None`` when the file has none.
        context: the context columns (condition of conditional models), when asked for.
    """

    features: npt.NDArray[np.float32]
    names: tuple[str, ...]
    labels: npt.NDArray[np.int8] | None = None
    context: pl.DataFrame | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def subset(self, index: npt.NDArray[np.intp]) -> Table:
        """The rows at ``index``."""
        labels = None if self.labels is None else self.labels[index]
        context = None if self.context is None else self.context[np.asarray(index).tolist()]
        return Table(self.features[index], self.names, labels, context)

    def normal_only(self) -> Table:
        """The rows labelled 0 (all rows when there are no labels)."""
        if self.labels is None:
            return self
        return self.subset(np.flatnonzero(self.labels == 0))


def _check_labels(raw: npt.NDArray[np.generic], source: str) -> npt.NDArray[np.int8]:
    values = np.asarray(raw)
    if values.ndim != 1:
        msg = f"{source}: labels must be 1-D, got shape {values.shape}"
        raise DataError(msg)
    if not np.isin(values, (0, 1)).all():
        bad = values[~np.isin(values, (0, 1))][:3].tolist()
        msg = f"{source}: labels must be 0 (normal) or 1 (anomaly), found {bad}"
        raise DataError(msg)
    return values.astype(np.int8)


def _frame_to_table(
    frame: pl.DataFrame,
    source: str,
    label_column: str | None,
    feature_columns: tuple[str, ...] | None,
    context_columns: tuple[str, ...] = (),
) -> Table:
    labels = None
    if label_column is not None and label_column in frame.columns:
        labels = _check_labels(frame[label_column].to_numpy(), f"{source} column {label_column!r}")
    if feature_columns is None:
        feature_columns = tuple(
            c for c in frame.columns if c != label_column and c not in context_columns
        )
    missing = [c for c in (*feature_columns, *context_columns) if c not in frame.columns]
    if missing:
        msg = f"{source}: column(s) {missing} not found; columns are {frame.columns}"
        raise DataError(msg)
    if not feature_columns:
        msg = f"{source}: no feature columns"
        raise DataError(msg)
    for name in feature_columns:
        dtype = frame.schema[name]
        if not dtype.is_numeric():
            msg = f"{source}: feature column {name!r} has non-numeric type {dtype}"
            raise DataError(msg)
        nulls = frame[name].null_count()
        if nulls:
            msg = f"{source}: feature column {name!r} has {nulls} missing value(s)"
            raise DataError(msg)
    matrix = frame.select(feature_columns).to_numpy().astype(np.float32)
    context = frame.select(context_columns) if context_columns else None
    return Table(matrix, tuple(feature_columns), labels, context)


def table_from_frame(
    frame: pl.DataFrame,
    source: str,
    *,
    label_column: str | None = "label",
    feature_columns: tuple[str, ...] | None = None,
    context_columns: tuple[str, ...] = (),
) -> Table:
    """A :class:`Table` from an in-memory frame, checked as :func:`load_table` checks files.

    Raises:
        DataError: missing or non-numeric feature columns, missing values, bad labels.
    """
    return _frame_to_table(frame, source, label_column, feature_columns, context_columns)


def _load_npz(path: Path, feature_columns: tuple[str, ...] | None) -> Table:
    with np.load(path, allow_pickle=False) as npz:
        if "X" not in npz:
            msg = (
                f"{path}: an .npz data set needs an array 'X' (and optionally 'y'); has {list(npz)}"
            )
            raise DataError(msg)
        x = np.asarray(npz["X"])
        labels = _check_labels(npz["y"], f"{path} array 'y'") if "y" in npz else None
        names = tuple(str(n) for n in npz["feature_names"]) if "feature_names" in npz else None
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
        msg = f"{path}: 'X' must be a numeric (n, d) array, got {x.dtype} {x.shape}"
        raise DataError(msg)
    if labels is not None and labels.shape[0] != x.shape[0]:
        msg = f"{path}: 'X' has {x.shape[0]} rows but 'y' has {labels.shape[0]}"
        raise DataError(msg)
    names = names or tuple(f"f{i:02d}" for i in range(x.shape[1]))
    table = Table(x.astype(np.float32), names, labels)
    if feature_columns is not None:
        picked = [names.index(c) for c in feature_columns if c in names]
        if len(picked) != len(feature_columns):
            msg = f"{path}: feature column(s) not found among {names}"
            raise DataError(msg)
        table = Table(table.features[:, picked], tuple(feature_columns), labels)
    return table


def load_table(
    path: str | Path,
    *,
    label_column: str | None = "label",
    feature_columns: tuple[str, ...] | None = None,
    context_columns: tuple[str, ...] = (),
) -> Table:
    """Load a CSV, Parquet or NPZ table.

    Args:
        path: the file; its suffix picks the reader.
        label_column: column holding 0/1 labels, if present (ignored for NPZ, which uses ``y``).
        feature_columns: the feature columns, in order; default every column that is
            neither the label nor a context column.
        context_columns: columns kept aside as the record's context (CSV/Parquet only).

    Returns:
        The :class:`Table`.

    Raises:
        DataError: missing file, unknown suffix, non-numeric or missing values, bad labels.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"data file {str(path)!r} does not exist"
        raise DataError(msg)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if context_columns:
            msg = f"context columns {list(context_columns)} need a CSV or Parquet file, not .npz"
            raise DataError(msg)
        return _load_npz(path, feature_columns)
    try:
        if suffix == ".csv":
            frame = pl.read_csv(path, infer_schema_length=10_000)
        elif suffix in (".parquet", ".pq"):
            frame = pl.read_parquet(path)
        else:
            msg = f"unsupported data file {str(path)!r}: use one of {TABULAR_SUFFIXES}"
            raise DataError(msg)
    except (pl.exceptions.PolarsError, OSError) as exc:
        msg = f"cannot read {str(path)!r}: {exc}"
        raise DataError(msg) from exc
    return _frame_to_table(frame, str(path), label_column, feature_columns, context_columns)


def load_column(path: str | Path, name: str) -> list[str]:
    """One column of a CSV/Parquet file (or an array of an NPZ file) as strings.

    Used for non-feature fields such as the segment of a record.

    Raises:
        DataError: missing file or column, or null values.
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            if name not in npz:
                msg = f"{path}: no array {name!r}; has {list(npz)}"
                raise DataError(msg)
            return [str(v) for v in npz[name].tolist()]
    try:
        frame = (
            pl.read_parquet(path, columns=[name])
            if path.suffix.lower() in (".parquet", ".pq")
            else (pl.read_csv(path, columns=[name], infer_schema_length=0))
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        msg = f"cannot read column {name!r} of {str(path)!r}: {exc}"
        raise DataError(msg) from exc
    column = frame[name]
    if column.null_count():
        msg = f"{path}: column {name!r} has {column.null_count()} missing value(s)"
        raise DataError(msg)
    return [str(v) for v in column.to_list()]


def load_builtin(name: str) -> Table:
    """Load a data set shipped inside the package (see ``data/builtin/README.md``).

    Raises:
        DataError: unknown name.
    """
    if name not in BUILTIN_DATASETS:
        msg = f"unknown built-in data set {name!r}; available: {sorted(BUILTIN_DATASETS)}"
        raise DataError(msg)
    resource = importlib.resources.files("streamvae.data.builtin").joinpath(BUILTIN_DATASETS[name])
    with importlib.resources.as_file(resource) as path:
        return _load_npz(path, None)
