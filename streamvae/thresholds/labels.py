"""Label-aware threshold choice when labelled anomalies exist (the default stays label-free)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamvae.thresholds.calibrate import Threshold
from streamvae.types import ScoreKind


@dataclass(frozen=True, slots=True)
class PRCurve:
    """Precision and recall of ``score > threshold`` at every distinct threshold (ascending)."""

    thresholds: npt.NDArray[np.float64]
    precision: npt.NDArray[np.float64]
    recall: npt.NDArray[np.float64]
    false_positive_rate: npt.NDArray[np.float64]
    n_positive: int
    n_negative: int


def precision_recall_curve(labels: npt.ArrayLike, scores: npt.ArrayLike) -> PRCurve:
    """Every operating point of ``score > t`` for ``t`` in the distinct scores (and below them).

    Precision is NaN where nothing is flagged.

    Raises:
        ValueError: shapes differ, labels not 0/1, or scores not finite.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if (
        y.shape != s.shape
        or y.ndim != 1
        or not np.isin(y, (0, 1)).all()
        or not np.isfinite(s).all()
    ):
        msg = "labels must be 0/1 and scores finite, both 1-D of the same length"
        raise ValueError(msg)
    pos = y.astype(bool)
    candidates = np.r_[np.min(s) - 1.0, np.unique(s)] if s.size else np.zeros(0)
    order = np.sort(s)
    above = s.size - np.searchsorted(order, candidates, side="right")
    pos_sorted = np.sort(s[pos])
    tp = pos_sorted.size - np.searchsorted(pos_sorted, candidates, side="right")
    fp = above - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(above > 0, tp / np.maximum(above, 1), np.nan)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    recall = tp / n_pos if n_pos else np.full(candidates.size, np.nan)
    fpr = fp / n_neg if n_neg else np.full(candidates.size, np.nan)
    return PRCurve(candidates, precision, recall, fpr, n_pos, n_neg)


def calibrate_for_target(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    score_kind: ScoreKind,
    target_precision: float | None = None,
    target_recall: float | None = None,
    created_at: str = "",
) -> Threshold:
    """The threshold meeting a target precision or a target recall.

    For a precision target, the qualifying threshold with the most recall; for a recall
    target, the highest qualifying threshold (the fewest false alarms).

    Raises:
        ValueError: not exactly one target, a target outside (0, 1], no labelled anomalies,
            or no threshold reaching the target.
    """
    if (target_precision is None) == (target_recall is None):
        msg = "give exactly one of target_precision or target_recall"
        raise ValueError(msg)
    target = target_precision if target_precision is not None else target_recall
    if target is None or not 0.0 < target <= 1.0:
        msg = f"the target must be in (0, 1], got {target}"
        raise ValueError(msg)
    curve = precision_recall_curve(labels, scores)
    if curve.n_positive == 0:
        msg = "the labelled data holds no anomalies (label 1): cannot tune for precision or recall"
        raise ValueError(msg)
    if target_precision is not None:
        ok = np.flatnonzero(curve.precision >= target_precision)  # NaN compares False
        if ok.size == 0:
            best = np.nanmax(curve.precision)
            msg = f"no threshold reaches precision {target_precision} (best {best:.3f})"
            raise ValueError(msg)
        i = int(ok[np.argmax(curve.recall[ok])])
        method = "target_precision"
    else:
        i = int(np.flatnonzero(curve.recall >= target)[-1])
        method = "target_recall"
    return Threshold(
        value=float(curve.thresholds[i]),
        score_kind=score_kind,
        method=method,  # type: ignore[arg-type]
        n_calibration=curve.n_negative,
        expected_alert_rate=float(curve.false_positive_rate[i]),
        empirical_alert_rate=float(curve.false_positive_rate[i]),
        diagnostics={"precision": float(curve.precision[i]), "recall": float(curve.recall[i])},
        created_at=created_at,
    )
