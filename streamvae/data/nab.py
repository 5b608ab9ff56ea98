"""A reader for the Numenta Anomaly Benchmark layout.

Two layouts are accepted:

* NAB's own repository: ``DIR/data/<category>/<file>.csv`` and
  ``DIR/labels/combined_windows.json``;
* a flat copy: ``DIR/<category>/<file>.csv`` and ``DIR/windows.json``.

Each CSV has the columns ``timestamp,value``; the labels map a file's relative path to its
anomaly windows ``[[start, end], ...]`` as timestamps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from streamvae.errors import DataError

LABEL_FILES = ("labels/combined_windows.json", "windows.json")


@dataclass(frozen=True, slots=True)
class NabFile:
    """One NAB series and its labelled windows.

    Attributes:
        name: relative path, e.g. ``realKnownCause/nyc_taxi.csv`` (the labels' key).
        timestamps: ``(n,)`` ``datetime64[ms]`` in file order (real files hold a few
            points out of order: a detector must cope, as in a live stream).
        values: ``(n,)`` float64.
        windows: anomaly windows as inclusive index spans into the points.
    """

    name: str
    timestamps: npt.NDArray[np.datetime64]
    values: npt.NDArray[np.float64]
    windows: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def timestamps_ms(self) -> npt.NDArray[np.int64]:
        """The timestamps as epoch milliseconds."""
        return self.timestamps.astype("datetime64[ms]").astype(np.int64)

    def labels(self) -> npt.NDArray[np.int8]:
        """``(n,)`` 1 inside an anomaly window, else 0."""
        out = np.zeros(len(self), np.int8)
        for start, end in self.windows:
            out[start : end + 1] = 1
        return out


def _parse_time(values: list[str], source: str) -> npt.NDArray[np.datetime64]:
    try:
        return np.array(values, dtype="datetime64[ms]")
    except ValueError as exc:
        msg = f"{source}: unreadable timestamp ({exc})"
        raise DataError(msg) from exc


def read_series(
    path: Path, name: str
) -> tuple[npt.NDArray[np.datetime64], npt.NDArray[np.float64]]:
    """The ``timestamp,value`` columns of one CSV.

    Raises:
        DataError: missing columns or unreadable values.
    """
    try:
        frame = pl.read_csv(
            path, columns=["timestamp", "value"], schema_overrides={"timestamp": pl.Utf8}
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        msg = f"{name}: cannot read timestamp,value columns ({exc})"
        raise DataError(msg) from exc
    stamps = _parse_time(frame["timestamp"].to_list(), name)
    values = frame["value"].cast(pl.Float64, strict=False).to_numpy()
    if np.isnan(values).any():
        msg = f"{name}: {int(np.isnan(values).sum())} missing or non-numeric value(s)"
        raise DataError(msg)
    return stamps, values


def _window_indices(
    stamps: npt.NDArray[np.datetime64], spans: list[list[str]], name: str
) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for span in spans:
        if len(span) != 2:
            msg = f"{name}: a window must be [start, end], got {span!r}"
            raise DataError(msg)
        start, end = _parse_time([str(span[0]), str(span[1])], name)
        if end < start:
            msg = f"{name}: window {span!r} ends before it starts"
            raise DataError(msg)
        # windows are aligned to data timestamps: the rows they cover, in file order
        inside = np.flatnonzero((stamps >= start) & (stamps <= end))
        if inside.size:
            out.append((int(inside[0]), int(inside[-1])))
    return tuple(sorted(out))


def find_labels(root: Path) -> tuple[Path, Path]:
    """``(data_dir, labels_file)`` of a NAB directory in either layout.

    Raises:
        DataError: neither layout found.
    """
    for relative in LABEL_FILES:
        labels = root / relative
        if labels.is_file():
            data = root / "data" if relative.startswith("labels/") else root
            return data, labels
    msg = f"{str(root)!r} is not a NAB directory: no {' or '.join(LABEL_FILES)} in it"
    raise DataError(msg)


def load_nab(root: str | Path, *, names: list[str] | None = None) -> list[NabFile]:
    """Every labelled file of the NAB corpus at ``root`` (sorted by name).

    Args:
        root: the corpus directory (either layout).
        names: only these files (relative paths as in the labels).

    Raises:
        DataError: unreadable labels or data, or a requested file missing.
    """
    data_dir, labels_path = find_labels(Path(root))
    try:
        labels = json.loads(labels_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"cannot read NAB labels {str(labels_path)!r}: {exc}"
        raise DataError(msg) from exc
    if not isinstance(labels, dict):
        msg = f"{str(labels_path)!r} must map file names to window lists"
        raise DataError(msg)
    wanted = sorted(labels) if names is None else names
    files: list[NabFile] = []
    for name in wanted:
        if name not in labels:
            msg = f"{name!r} is not in {labels_path.name}; known: {sorted(labels)[:10]}"
            raise DataError(msg)
        path = data_dir / name
        if not path.is_file():
            msg = f"NAB data file {str(path)!r} is missing"
            raise DataError(msg)
        stamps, values = read_series(path, name)
        files.append(NabFile(name, stamps, values, _window_indices(stamps, labels[name], name)))
    return files
