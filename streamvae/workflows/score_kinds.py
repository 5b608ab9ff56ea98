"""Offline scoring of KPI points and image files: ``streamvae score`` for the other model kinds.

Feature rows stream through :mod:`streamvae.workflows.score` chunk by chunk. The two kinds
here read their input whole, because of what they score:

- **KPI points** (CSV/Parquet with ``series``, ``ts`` in epoch ms, ``value``): a point's
  window is its series' recent history, so the points are replayed in file order through
  the same window store the service keeps (late and duplicate points are refused as the
  service refuses them), and each ready window's newest point is scored and decided.
- **Images** (``.npy``, ``.npz`` with ``X``, or a folder of PNG/JPEG files): scored in
  chunks of ``chunk_images`` and decided image by image.

Both write one output row per input point or image, with the verdict columns the service
puts on its score topic (``score``, ``threshold``, ``p_value``, ``severity``, ``is_anomaly``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from streamvae.bundle import ModelBundle
from streamvae.bundle.image import ImageDetector, ImagePreprocess
from streamvae.bundle.window import WindowDetector, WindowPreprocess, score_points
from streamvae.data.batches import ChunkWriter
from streamvae.data.images import image_names, load_images
from streamvae.errors import DataError
from streamvae.thresholds import ThresholdSet
from streamvae.types import ModelRef
from streamvae.workflows.score import ScoreSummary

POINT_COLUMNS = ("series", "ts", "value")
CHUNK_IMAGES = 256


def _verdicts(thresholds: ThresholdSet, scores: np.ndarray, segments: Sequence[str] | None,
              scored: np.ndarray) -> dict[str, object]:  # fmt: skip
    """The verdict columns for ``scores`` (rows not ``scored`` get none and are not anomalies)."""
    decided = thresholds.decide(np.where(scored, scores, -np.inf), segments)
    severity = np.where(decided.severities == "", "normal", decided.severities)
    return {
        "score": _nullable(np.where(scored, scores, np.nan)),
        "threshold": decided.thresholds,
        "p_value": _nullable(np.where(scored, decided.p_values, np.nan)),
        "severity": pl.Series(
            [level if ok else None for level, ok in zip(severity.tolist(), scored, strict=True)],
            dtype=pl.String,
        ),
        "is_anomaly": (decided.severities != "") & scored,
    }


def _nullable(values: np.ndarray) -> pl.Series:
    """Floats with NaN as null: an unscored point has no score (an empty CSV cell)."""
    return pl.Series(values, dtype=pl.Float64).fill_nan(None)


def score_other_kind(
    bundle: ModelBundle, ref: ModelRef, source: str | Path, output: str | Path,
    *, on_chunk: Callable[[int], None] | None = None,
) -> ScoreSummary:  # fmt: skip
    """Score a KPI model's points or an image model's images (by the bundle's kind).

    Raises:
        DataError: a kind ``streamvae score`` does not read, or unreadable input.
    """
    if isinstance(bundle.preprocess, WindowPreprocess):
        return score_points_file(bundle, ref, source, output, on_chunk=on_chunk)
    if isinstance(bundle.preprocess, ImagePreprocess):
        return score_images_file(bundle, ref, source, output, on_chunk=on_chunk)
    msg = f"streamvae score does not read {type(bundle.preprocess).__name__} models"
    raise DataError(msg)


def _read_points(source: Path) -> pl.DataFrame:
    suffix = source.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        msg = f"KPI points are read from CSV or Parquet, got {source.name!r}"
        raise DataError(msg)
    try:
        frame = pl.read_csv(source) if suffix == ".csv" else pl.read_parquet(source)
    except (OSError, pl.exceptions.PolarsError) as exc:
        msg = f"cannot read KPI points from {str(source)!r}: {exc}".splitlines()[0]
        raise DataError(msg) from exc
    missing = [c for c in POINT_COLUMNS if c not in frame.columns]
    if missing:
        msg = f"{source.name}: KPI points need columns {list(POINT_COLUMNS)}; missing {missing}"
        raise DataError(msg)
    if not frame.schema["ts"].is_integer() or not frame.schema["value"].is_numeric():
        msg = f"{source.name}: 'ts' must be integer epoch milliseconds and 'value' numeric"
        raise DataError(msg)
    return frame


def score_points_file(
    bundle: ModelBundle, ref: ModelRef, source: str | Path, output: str | Path,
    *, on_chunk: Callable[[int], None] | None = None,
) -> ScoreSummary:  # fmt: skip
    """Score the KPI points of ``source`` in file order, as the service would; write verdicts.

    The output keeps the input's columns and adds ``status`` (``ready`` when the point's
    window was scored; else why not: ``warming_up``, ``late``, ``duplicate``...),
    ``score``, ``expected`` (the model's expectation of the point, raw units) and the
    verdict columns.
    """
    started = time.perf_counter()
    detector = WindowDetector(bundle)
    thresholds = detector.threshold
    frame = _read_points(Path(source))
    series = [str(s) for s in frame["series"].to_list()]
    points = score_points(
        detector, series, frame["ts"].to_numpy().astype(np.int64),
        frame["value"].cast(pl.Float64).to_numpy(),
    )  # fmt: skip
    segments: Sequence[str] | None = None
    if thresholds.segment_field == "series":
        segments = series
    elif thresholds.segment_field == "group":
        segments = [detector.preprocess.group(s) for s in series]
    scored = points.status == "ready"
    columns = {"status": points.status.tolist(), "expected": _nullable(points.expected)}
    out = frame.with_columns(
        pl.DataFrame(columns | _verdicts(thresholds, points.score, segments, scored))
    )
    with ChunkWriter(output) as writer:
        writer.write(out)
    if on_chunk is not None:
        on_chunk(out.height)
    return ScoreSummary(
        ref, Path(output), out.height, int(out["is_anomaly"].sum()), int((~scored).sum()),
        time.perf_counter() - started, thresholds.default.value,
    )  # fmt: skip


def score_images_file(
    bundle: ModelBundle, ref: ModelRef, source: str | Path, output: str | Path,
    *, chunk_images: int = CHUNK_IMAGES, on_chunk: Callable[[int], None] | None = None,
) -> ScoreSummary:  # fmt: skip
    """Score every image of ``source``; one output row per image, in input order.

    Columns: ``image`` (the file name in a folder, else the index), ``label`` when an
    ``.npz`` has labels, then the verdict columns.

    Raises:
        DataError: unreadable images, or images of another size than the model's.
    """
    started = time.perf_counter()
    detector = ImageDetector(bundle)
    thresholds = detector.threshold
    images, labels = load_images(source)
    shape = detector.preprocess.shape
    if images.shape[1:] != shape.as_tuple():
        msg = (
            f"images of shape {tuple(images.shape[1:])} (C, H, W), but the model takes "
            f"{shape.as_tuple()}"
        )
        raise DataError(msg)
    flat = images.reshape(images.shape[0], -1)
    names = image_names(source, images.shape[0])
    anomalies = 0
    with ChunkWriter(output) as writer:
        for start in range(0, flat.shape[0], chunk_images):
            stop = min(start + chunk_images, flat.shape[0])
            scores = detector.select(detector.score(flat[start:stop]))
            columns: dict[str, object] = {"image": names[start:stop]}
            if labels is not None:
                columns["label"] = labels[start:stop]
            verdicts = _verdicts(thresholds, scores, None, np.ones(stop - start, bool))
            chunk = pl.DataFrame(columns | verdicts)
            anomalies += int(chunk["is_anomaly"].sum())
            writer.write(chunk)
            if on_chunk is not None:
                on_chunk(chunk.height)
    return ScoreSummary(
        ref, Path(output), flat.shape[0], anomalies, 0, time.perf_counter() - started,
        thresholds.default.value,
    )  # fmt: skip
