"""The thresholds in force: a default, optional per-segment thresholds, p-value severity bands."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from streamvae.thresholds.calibrate import F64, Threshold, p_values
from streamvae.types import SEVERITIES

SeverityBands = tuple[tuple[str, float], ...]
DEFAULT_BANDS: SeverityBands = (("critical", 0.001), ("warning", 1.0))
"""An alert is ``critical`` when its conformal p-value is at most 0.001, else ``warning``."""


def check_bands(bands: SeverityBands) -> SeverityBands:
    """Validate severity bands: known names, ascending p-value bounds ending at 1.

    Raises:
        ValueError: naming the bad band.
    """
    bounds = [p for _, p in bands]
    if not bands or bounds != sorted(bounds) or bounds[-1] != 1.0:
        msg = f"severity bands need ascending p-value bounds ending at 1.0, got {bands}"
        raise ValueError(msg)
    for name, bound in bands:
        if name not in SEVERITIES or not 0.0 < bound <= 1.0:
            msg = f"bad severity band ({name!r}, {bound}): names {SEVERITIES}, bounds in (0, 1]"
            raise ValueError(msg)
    return tuple((str(n), float(p)) for n, p in bands)


@dataclass(frozen=True, slots=True)
class Decisions:
    """Per-record outcome: the threshold applied, the p-value, the severity (``""`` = normal)."""

    thresholds: F64
    p_values: F64
    severities: npt.NDArray[np.str_]


@dataclass(frozen=True, slots=True)
class ThresholdSet:
    """What decides: a default threshold, per-segment ones, and severity bands.

    Attributes:
        default: applies to records of unknown or small segments (and to all without
            segmentation).
        segments: threshold per segment value (e.g. per merchant category).
        segment_field: the record field whose value picks the segment.
        severity_bands: ``(name, max p-value)`` pairs, ascending.
        reference: sorted normal calibration scores for p-values: ``""`` for the default,
            else per segment. Without them p-values are NaN and alerts are ``warning``.
    """

    default: Threshold
    segments: Mapping[str, Threshold] = field(default_factory=dict)
    segment_field: str | None = None
    severity_bands: SeverityBands = DEFAULT_BANDS
    reference: Mapping[str, F64] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_bands(self.severity_bands)
        kinds = {t.score_kind for t in self.segments.values()} | {self.default.score_kind}
        if len(kinds) > 1:
            msg = f"all thresholds of a set must use one score kind, got {sorted(kinds)}"
            raise ValueError(msg)
        if self.segments and not self.segment_field:
            msg = "per-segment thresholds need a segment_field"
            raise ValueError(msg)

    @property
    def score_kind(self) -> str:
        """The score every threshold of the set applies to."""
        return self.default.score_kind

    def decide(
        self, scores: npt.ArrayLike, segments: Sequence[str | None] | None = None
    ) -> Decisions:
        """Thresholds, p-values and severities for ``scores`` (``segments`` per record)."""
        s = np.asarray(scores, dtype=np.float64)
        thresholds = np.full(s.shape, self.default.value)
        pvals = self._p_values(s, "")
        if segments is not None and self.segments:
            keys = np.asarray(
                [seg if seg in self.segments else "" for seg in segments], dtype=object
            )
            for key in set(keys.tolist()) - {""}:
                rows = keys == key
                thresholds[rows] = self.segments[key].value
                pvals[rows] = self._p_values(s[rows], key)
        flagged = s > thresholds
        return Decisions(thresholds, pvals, self._severities(flagged, pvals))

    def _p_values(self, scores: F64, key: str) -> F64:
        reference = self.reference.get(key)
        if reference is None or reference.size == 0:
            return np.full(scores.shape, np.nan)
        return p_values(scores, reference)

    def _severities(self, flagged: npt.NDArray[np.bool_], pvals: F64) -> npt.NDArray[np.str_]:
        out = np.full(flagged.shape, "", dtype="<U8")
        out[flagged] = self.severity_bands[-1][0]
        for name, bound in reversed(self.severity_bands[:-1]):
            out[flagged & (pvals <= bound)] = name  # NaN p-values stay in the last band
        return out

    def for_model(self, name: str, version: str) -> ThresholdSet:
        """Bind every threshold of the set to a registered model version."""
        return replace(
            self,
            default=self.default.for_model(name, version),
            segments={k: t.for_model(name, version) for k, t in self.segments.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (the reference scores are stored beside, as arrays)."""
        return {
            "default": self.default.to_dict(),
            "segments": {k: t.to_dict() for k, t in self.segments.items()},
            "segment_field": self.segment_field,
            "severity_bands": [list(b) for b in self.severity_bands],
        }

    @classmethod
    def from_dict(
        cls, values: dict[str, Any], reference: Mapping[str, F64] | None = None
    ) -> ThresholdSet:
        """Inverse of :meth:`to_dict`; also accepts a bare threshold record.

        Raises:
            ValueError: invalid records.
        """
        if "default" not in values:  # a single threshold, as written by older bundles
            return cls(Threshold.from_dict(values), reference=reference or {})
        return cls(
            default=Threshold.from_dict(values["default"]),
            segments={k: Threshold.from_dict(v) for k, v in values.get("segments", {}).items()},
            segment_field=values.get("segment_field"),
            severity_bands=tuple(
                (str(n), float(p)) for n, p in values.get("severity_bands", DEFAULT_BANDS)
            ),
            reference=reference or {},
        )


def calibrate_segments(
    scores: F64,
    segment_values: Sequence[str],
    calibrate: Callable[[F64], Threshold],
    *,
    min_size: int,
) -> tuple[dict[str, Threshold], dict[str, str]]:
    """Calibrate one threshold per segment with enough records.

    Returns:
        ``(thresholds, skipped)``: the calibrated segments, and the others with the reason
        they fall back to the default threshold.
    """
    values = np.asarray(segment_values, dtype=object)
    thresholds: dict[str, Threshold] = {}
    skipped: dict[str, str] = {}
    for key in sorted(set(values.tolist())):
        rows = scores[values == key]
        if rows.size < min_size:
            skipped[str(key)] = f"{rows.size} records < min_segment_size {min_size}"
            continue
        try:
            thresholds[str(key)] = calibrate(rows)
        except ValueError as exc:
            skipped[str(key)] = str(exc)
    return thresholds, skipped
