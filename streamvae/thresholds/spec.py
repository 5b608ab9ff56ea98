"""One entry point for every label-free calibration: a spec in, a ``ThresholdSet`` out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streamvae.thresholds.calibrate import (
    Bootstrap,
    Threshold,
    calibrate_fpr,
    calibrate_percentile,
    validated_scores,
)
from streamvae.thresholds.sets import (
    DEFAULT_BANDS,
    SeverityBands,
    ThresholdSet,
    calibrate_segments,
)
from streamvae.thresholds.tail import calibrate_pot
from streamvae.types import ScoreKind


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationSpec:
    """How to calibrate: a percentile, or a target false-positive rate (optionally by a tail fit).

    Attributes:
        percentile: e.g. 99 (numpy's interpolated percentile of normal scores).
        target_fpr: e.g. 0.001 (the finite-sample conformal quantile).
        tail: fit a generalised Pareto tail (needed below ``1 / (n + 1)``).
        tail_fraction: share of the highest scores the tail model is fitted to.
        bootstrap: interval settings.
        segment_field: record field for per-segment thresholds (``None``: one threshold).
        min_segment_size: segments with fewer calibration records use the default.
        severity_bands: ``(severity, max p-value)`` bands, ascending.
    """

    percentile: float | None = None
    target_fpr: float | None = None
    tail: bool = False
    tail_fraction: float = 0.1
    bootstrap: Bootstrap = field(default_factory=Bootstrap)
    segment_field: str | None = None
    min_segment_size: int = 200
    severity_bands: SeverityBands = DEFAULT_BANDS

    def __post_init__(self) -> None:
        if (self.percentile is None) == (self.target_fpr is None):
            msg = "give exactly one of a percentile or a target false-positive rate"
            raise ValueError(msg)
        if self.tail and self.target_fpr is None:
            msg = "the tail model needs a target false-positive rate, not a percentile"
            raise ValueError(msg)
        if self.min_segment_size < 1:
            msg = f"min_segment_size must be >= 1, got {self.min_segment_size}"
            raise ValueError(msg)


def calibrate_one(
    scores: npt.ArrayLike, spec: CalibrationSpec, *, score_kind: ScoreKind, created_at: str = ""
) -> Threshold:
    """One threshold by ``spec`` (see :class:`CalibrationSpec`).

    Raises:
        ValueError: bad scores, or a rate the data cannot support (the message says why).
    """
    boot, kind, at = spec.bootstrap, score_kind, created_at
    if spec.percentile is not None:
        return calibrate_percentile(
            scores, spec.percentile, score_kind=kind, bootstrap=boot, created_at=at
        )
    alpha = float(spec.target_fpr or 0.0)  # never None here: checked in __post_init__
    if spec.tail:
        return calibrate_pot(
            scores, alpha, score_kind=kind, tail_fraction=spec.tail_fraction, bootstrap=boot,
            created_at=at,
        )  # fmt: skip
    return calibrate_fpr(scores, alpha, score_kind=kind, bootstrap=boot, created_at=at)


def calibrate_set(
    scores: npt.ArrayLike,
    spec: CalibrationSpec,
    *,
    score_kind: ScoreKind,
    segments: Sequence[str] | None = None,
    created_at: str = "",
) -> tuple[ThresholdSet, dict[str, str]]:
    """The default threshold plus, when ``spec.segment_field`` is set, one per large segment.

    Args:
        scores: ``(n,)`` normal calibration scores.
        spec: how to calibrate.
        score_kind: the score these are.
        segments: ``(n,)`` segment value per score (required with ``spec.segment_field``).
        created_at: ISO time stamp to record.

    Returns:
        The set (with the sorted calibration scores kept for p-values) and the segments
        that fall back to the default, with the reason.

    Raises:
        ValueError: as :func:`calibrate_one`, or segments missing / of the wrong length.
    """
    arr = validated_scores(scores)
    raw = np.asarray(scores, dtype=np.float64)
    default = calibrate_one(raw, spec, score_kind=score_kind, created_at=created_at)
    reference = {"": arr}
    by_segment: dict[str, Threshold] = {}
    skipped: dict[str, str] = {}
    if spec.segment_field is not None:
        if segments is None or len(segments) != raw.size:
            msg = f"per-segment calibration needs one {spec.segment_field!r} value per record"
            raise ValueError(msg)
        values = np.asarray([str(v) for v in segments], dtype=object)

        def one(seg_scores: npt.NDArray[np.float64]) -> Threshold:
            return calibrate_one(seg_scores, spec, score_kind=score_kind, created_at=created_at)

        by_segment, skipped = calibrate_segments(
            raw, values.tolist(), one, min_size=spec.min_segment_size
        )
        reference |= {k: np.sort(raw[values == k]) for k in by_segment}
    thresholds = ThresholdSet(
        default=default,
        segments=by_segment,
        segment_field=spec.segment_field,
        severity_bands=spec.severity_bands,
        reference=reference,
    )
    return thresholds, skipped
