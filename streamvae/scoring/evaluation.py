"""Detection-quality metrics on labelled data (pure numpy; 1 = anomaly)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt


def _labels_and_scores(
    labels: npt.ArrayLike, scores: npt.ArrayLike
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        msg = f"labels {y.shape} and scores {s.shape} must be 1-D of the same length"
        raise ValueError(msg)
    if not np.isin(y, (0, 1)).all():
        msg = "labels must be 0 (normal) or 1 (anomaly)"
        raise ValueError(msg)
    if not np.isfinite(s).all():
        msg = "scores must be finite"
        raise ValueError(msg)
    return y.astype(bool), s


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    Returns NaN when only one class is present.

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y, s = _labels_and_scores(labels, scores)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # average rank within each run of tied scores
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Average precision (area under the precision-recall step curve, as scikit-learn).

    Returns NaN when there are no positives.
    """
    y, s = _labels_and_scores(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # one point per distinct threshold (ties are decided together)
    last_of_run = np.r_[np.diff(s_sorted) != 0, True]
    tp = np.cumsum(y_sorted)[last_of_run]
    fp = np.cumsum(~y_sorted)[last_of_run]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    recall_steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(recall_steps * precision))


@dataclass(frozen=True, slots=True)
class DetectionReport:
    """Metrics of one labelled evaluation at a threshold."""

    n: int
    n_anomalies: int
    auroc: float
    average_precision: float
    threshold: float
    alerts: int
    precision: float
    recall: float
    f1: float
    false_positive_rate: float

    def to_dict(self) -> dict[str, float | int]:
        """Plain values."""
        return asdict(self)


def detection_report(
    labels: npt.ArrayLike, scores: npt.ArrayLike, threshold: float
) -> DetectionReport:
    """AUROC, average precision and precision/recall/F1/FPR at ``score > threshold``.

    Precision is NaN when nothing is flagged; recall NaN without positives.
    """
    y, s = _labels_and_scores(labels, scores)
    flagged = s > threshold
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    fn = int(np.sum(~flagged & y))
    n_neg = int(np.sum(~y))
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return DetectionReport(
        n=int(y.size),
        n_anomalies=int(y.sum()),
        auroc=roc_auc(y, s),
        average_precision=average_precision(y, s),
        threshold=float(threshold),
        alerts=int(flagged.sum()),
        precision=precision,
        recall=recall,
        f1=f1,
        false_positive_rate=fp / n_neg if n_neg else float("nan"),
    )
