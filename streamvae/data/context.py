"""Context columns of a training or scoring table: the condition of conditional models."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import polars as pl

from streamvae.data.schema import ContextSchema
from streamvae.errors import DataError

F32 = npt.NDArray[np.float32]


def _check_present(frame: pl.DataFrame, names: tuple[str, ...]) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        msg = f"context column(s) {missing} not found; columns are {frame.columns}"
        raise DataError(msg)
    for name in names:
        nulls = frame[name].null_count()
        if nulls:
            msg = f"context column {name!r} has {nulls} missing value(s)"
            raise DataError(msg)


def _category_strings(column: pl.Series) -> list[str]:
    return [str(v) for v in column.to_list()]


def fit_context(
    frame: pl.DataFrame, numeric: tuple[str, ...], categorical: tuple[str, ...]
) -> ContextSchema:
    """The context schema of ``frame``: categories are the sorted distinct values seen.

    Raises:
        DataError: a missing column, missing values, or a non-numeric numeric column.
    """
    _check_present(frame, numeric + categorical)
    for name in numeric:
        if not frame.schema[name].is_numeric():
            msg = f"numeric context column {name!r} has type {frame.schema[name]}"
            raise DataError(msg)
    try:
        return ContextSchema(
            numeric=numeric,
            categorical=tuple(
                (name, tuple(sorted(set(_category_strings(frame[name]))))) for name in categorical
            ),
        )
    except ValueError as exc:
        raise DataError(str(exc)) from exc


def context_matrix(schema: ContextSchema, frame: pl.DataFrame) -> F32:
    """``(n, width)`` raw condition matrix: numeric values, then category codes.

    Raises:
        DataError: missing columns or values, or non-numeric numeric columns.
        SchemaMismatchError: a category unseen in training.
    """
    _check_present(frame, schema.names)
    columns: list[F32] = []
    for name in schema.numeric:
        if not frame.schema[name].is_numeric():
            msg = f"numeric context column {name!r} has type {frame.schema[name]}"
            raise DataError(msg)
        columns.append(frame[name].cast(pl.Float64).to_numpy().astype(np.float32))
    for name, _ in schema.categorical:
        columns.append(schema.codes(name, _category_strings(frame[name])))
    return np.column_stack(columns).astype(np.float32, copy=False)
