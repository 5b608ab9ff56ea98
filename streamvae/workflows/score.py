"""Offline scoring: a file of feature rows in, a file of verdicts out, in bounded memory.

``streamvae score MODEL_URI INPUT OUTPUT`` and :meth:`streamvae.api.Model.decide` share
:func:`decide_frame`; both decide as the service does (same score, thresholds recorded for
the version, p-values, severities, segments, top features), see
:mod:`streamvae.bundle.verdicts`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from streamvae.bundle import ModelBundle, TabularDetector, TabularPreprocess
from streamvae.bundle.verdicts import RowVerdicts, decide_rows
from streamvae.config import TrackingSettings
from streamvae.data import Table
from streamvae.data.batches import ChunkWriter, read_chunks
from streamvae.errors import DataError
from streamvae.service.outcome import field_text
from streamvae.thresholds import ThresholdSet
from streamvae.tracking import configure, load_resolved, resolve
from streamvae.types import ModelRef

CHUNK_ROWS = 65_536
"""Rows scored at a time: memory is a few chunks whatever the input's size."""
INVALID_ROW = "missing or non-finite feature value"


def tabular_bundle(bundle: ModelBundle) -> TabularPreprocess:
    """The bundle's tabular preprocessing.

    Raises:
        DataError: a KPI window or image model (they do not read feature rows).
    """
    if not isinstance(bundle.preprocess, TabularPreprocess):
        kind = type(bundle.preprocess).__name__.removesuffix("Preprocess").lower()
        msg = f"this is a {kind} model: offline scoring reads feature rows (tabular models)"
        raise DataError(msg)
    return bundle.preprocess


def _features(frame: pl.DataFrame, names: Sequence[str], source: str) -> np.ndarray:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        msg = f"{source}: feature column(s) {missing[:5]} not found; columns are {frame.columns}"
        raise DataError(msg)
    for name in names:
        dtype = frame.schema[name]
        if not (dtype.is_numeric() or dtype == pl.Null):
            msg = f"{source}: feature column {name!r} has non-numeric type {dtype}"
            raise DataError(msg)
    matrix: np.ndarray = (
        frame.select(pl.col(list(names)).cast(pl.Float64)).to_numpy().astype(np.float32)
    )
    return matrix


def decide_frame(
    detector: TabularDetector,
    thresholds: ThresholdSet,
    frame: pl.DataFrame,
    *,
    carry: Sequence[str] = (),
    top_features: int = 3,
    source: str = "input",
) -> pl.DataFrame:
    """Verdicts for the rows of ``frame`` (feature columns by name), one output row each.

    Rows with a missing or non-finite feature are kept, unscored, with ``error`` set;
    ``carry`` columns (ids, keys, timestamps) are copied to the output first.

    Raises:
        DataError: a feature or carried column is missing, or not numeric.
    """
    preprocess = tabular_bundle(detector.bundle)
    names = preprocess.schema.names
    absent = [c for c in carry if c not in frame.columns]
    if absent:
        msg = f"{source}: column(s) {absent} to carry not found; columns are {frame.columns}"
        raise DataError(msg)
    matrix = _features(frame, names, source)
    valid = np.isfinite(matrix).all(axis=1)
    rows = np.flatnonzero(valid)
    context = None
    if preprocess.context is not None:
        table = Table(matrix[rows], names, None, frame[rows.tolist()])
        context = detector.context_of(table)
    segments = None
    if thresholds.segment_field is not None and thresholds.segment_field in frame.columns:
        column = frame[thresholds.segment_field].to_list()
        segments = [field_text(column[i]) for i in rows.tolist()]
    verdicts: RowVerdicts = decide_rows(
        detector,
        matrix[rows],
        thresholds,
        context=context,
        segments=segments,
        top_features=top_features,
    )
    decided = verdicts.to_frame(names)
    if rows.size != frame.height:  # put the unscored rows back, in input order
        position = pl.Series("_pos", rows, dtype=pl.Int64)
        decided = (
            pl.DataFrame({"_pos": np.arange(frame.height)})
            .join(decided.with_columns(position), on="_pos", how="left", maintain_order="left")
            .drop("_pos")
        )
    error = pl.Series(
        "error", [None if ok else INVALID_ROW for ok in valid.tolist()], dtype=pl.String
    )
    return pl.concat([frame.select(list(carry)), decided], how="horizontal").with_columns(error)


@dataclass(frozen=True, slots=True)
class ScoreSummary:
    """What ``streamvae score`` did."""

    model: ModelRef
    output: Path
    rows: int
    anomalies: int
    invalid: int
    seconds: float
    threshold: float

    @property
    def rows_per_second(self) -> float:
        """Throughput over the whole run (reading, scoring, writing)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        """Plain values for printing (table or JSON)."""
        return {
            "model": f"{self.model.name} v{self.model.version}",
            "output": str(self.output),
            "rows": self.rows,
            "anomalies": self.anomalies,
            "unscored (invalid rows)": self.invalid,
            "threshold (default)": self.threshold,
            "seconds": round(self.seconds, 3),
            "rows/s": round(self.rows_per_second, 1),
        }


def carried_columns(
    frame: pl.DataFrame, names: Sequence[str], wanted: Sequence[str] | None
) -> list[str]:
    """The input columns copied to the output: ``wanted``, or every non-feature column."""
    if wanted is not None:
        return list(wanted)
    features = set(names)
    return [c for c in frame.columns if c not in features]


def score_file(
    uri: str,
    source: str | Path,
    output: str | Path,
    *,
    tracking: TrackingSettings,
    id_columns: Sequence[str] | None = None,
    top_features: int = 3,
    chunk_rows: int = CHUNK_ROWS,
    on_chunk: Callable[[int], None] | None = None,
) -> ScoreSummary:
    """Score every row of ``source`` with ``uri``; write the verdicts to ``output``.

    The input is read ``chunk_rows`` at a time (polars' streaming scan), scored and
    appended to the output, so a file larger than memory needs memory for a few chunks.

    Args:
        uri: the model (thresholds recorded for its version by ``calibrate`` apply).
        source: CSV, Parquet or NPZ feature rows (columns named as the model's features);
            for a KPI model CSV/Parquet points (``series, ts, value``), for an image model
            ``.npy``/``.npz`` images or a folder of image files
            (see :mod:`streamvae.workflows.score_kinds`).
        output: ``.parquet`` or ``.csv``.
        tracking: the MLflow store.
        id_columns: input columns copied to the output (default: every non-feature column).
        top_features: explaining features per row.
        chunk_rows: rows read, scored and written at a time.
        on_chunk: called with the number of rows of each chunk written (progress).

    Raises:
        DataError, ModelLoadError, NotCalibratedError: bad input, model or thresholds.
    """
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        configure(tracking)
        resolved = resolve(uri, Path(tmp))
        bundle = load_resolved(resolved)
    if not isinstance(bundle.preprocess, TabularPreprocess):
        from streamvae.workflows.score_kinds import score_other_kind

        return score_other_kind(bundle, resolved.ref, source, output, on_chunk=on_chunk)
    detector = TabularDetector(bundle)
    thresholds = detector.threshold
    names = bundle.preprocess.schema.names
    anomalies = invalid = 0
    carry: list[str] | None = None
    with ChunkWriter(output) as writer:
        for chunk in read_chunks(source, chunk_rows):
            carry = carry if carry is not None else carried_columns(chunk, names, id_columns)
            decided = decide_frame(
                detector, thresholds, chunk, carry=carry, top_features=top_features,
                source=str(source),
            )  # fmt: skip
            anomalies += int(decided["is_anomaly"].sum() or 0)
            invalid += int(decided["error"].is_not_null().sum())
            writer.write(decided)
            if on_chunk is not None:
                on_chunk(decided.height)
        if writer.rows == 0:  # an input without rows: an empty output with the columns
            empty = pl.DataFrame({n: pl.Series([], dtype=pl.Float64) for n in names})
            writer.write(decide_frame(detector, thresholds, empty, top_features=top_features))
        rows = writer.rows
    return ScoreSummary(
        resolved.ref, Path(output), rows, anomalies, invalid, time.perf_counter() - started,
        thresholds.default.value,
    )  # fmt: skip
