"""Verdicts on a batch of feature rows outside the stream: one function for every batch path.

The Python API (``streamvae.load(...).decide``), ``streamvae score`` and the MLflow pyfunc all
call :func:`decide_rows`, and it decides exactly as the service does: the bundle's score
kind, the thresholds in force (per segment when the set is segmented), conformal p-values,
severity bands, and the top features of each row by their share of the reconstruction
error, with observed and expected values (what an alert's ``explanation`` holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from streamvae.bundle.tabular import TabularDetector
from streamvae.scoring.scores import top_contributions
from streamvae.thresholds import ThresholdSet

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RowVerdicts:
    """Per-row outcome of a batch, as columns.

    Attributes:
        score: the score the thresholds apply to (the bundle's score kind).
        threshold: the threshold applied to each row (its segment's, or the default).
        p_value: conformal p-value among the calibration scores (NaN without them).
        severity: ``""`` for normal rows, else the severity band (``warning``, ``critical``);
            :meth:`to_frame` writes ``normal`` for ``""``, as the service's score records do.
        segment: each row's segment value, when the thresholds are segmented.
        top_index: ``(n, k)`` feature indices by share of the row's error, largest first.
        top_share: ``(n, k)`` their shares of the row's error, in [0, 1].
        observed: ``(n, k)`` the rows' values of those features (raw units).
        expected: ``(n, k)`` the model's reconstruction of them (raw units).
    """

    score: F64
    threshold: F64
    p_value: F64
    severity: npt.NDArray[np.str_]
    segment: list[str | None] | None
    top_index: npt.NDArray[np.intp]
    top_share: F64
    observed: F64
    expected: F64

    @property
    def is_anomaly(self) -> npt.NDArray[np.bool_]:
        """Rows over their threshold (an alert in the service, before alert hygiene)."""
        flagged: npt.NDArray[np.bool_] = self.severity != ""
        return flagged

    def explanations(self, names: Sequence[str]) -> list[list[dict[str, float | str]]]:
        """Per row, the top features as an alert's ``explanation`` lists them."""
        return [
            [
                {
                    "feature": names[int(i)],
                    "value": float(v),
                    "expected": float(e),
                    "contribution": round(float(s), 4),
                }
                for i, v, e, s in zip(idx, obs, exp, share, strict=True)
            ]
            for idx, obs, exp, share in zip(
                self.top_index, self.observed, self.expected, self.top_share, strict=True
            )
        ]

    def to_frame(self, names: Sequence[str]) -> pl.DataFrame:
        """One row per input row, flat columns (CSV holds them too).

        ``score, threshold, p_value, severity, is_anomaly``, the ``segment`` when
        segmented, then ``top{k}_feature, top{k}_value, top{k}_expected, top{k}_share``
        for each explaining feature.
        """
        columns: dict[str, object] = {
            "score": self.score,
            "threshold": self.threshold,
            "p_value": self.p_value,
            "severity": pl.Series([s or "normal" for s in self.severity.tolist()], dtype=pl.String),
            "is_anomaly": self.is_anomaly,
        }
        if self.segment is not None:
            columns["segment"] = pl.Series("segment", self.segment, dtype=pl.String)
        labels = np.asarray(names, dtype=object)
        for k in range(self.top_index.shape[1]):
            columns[f"top{k + 1}_feature"] = pl.Series(
                labels[self.top_index[:, k]].tolist(), dtype=pl.String
            )
            columns[f"top{k + 1}_value"] = self.observed[:, k]
            columns[f"top{k + 1}_expected"] = self.expected[:, k]
            columns[f"top{k + 1}_share"] = self.top_share[:, k]
        return pl.DataFrame(columns)


def decide_rows(
    detector: TabularDetector,
    raw: F32,
    thresholds: ThresholdSet,
    *,
    context: F32 | None = None,
    segments: Sequence[str | None] | None = None,
    top_features: int = 3,
) -> RowVerdicts:
    """Score ``raw (n, d)`` rows (schema order, raw units) and decide each one.

    Args:
        detector: the tabular model.
        raw: the feature rows.
        thresholds: the thresholds in force for that model version.
        context: ``(n, width)`` raw context of a conditional model.
        segments: each row's segment value (used when ``thresholds`` is segmented).
        top_features: how many features explain each row.
    """
    scored = detector.score(raw, context)
    score = detector.select(scored)
    used = segments if thresholds.segment_field is not None else None
    decided = thresholds.decide(score, used)
    idx, share = top_contributions(scored.scores.per_feature, top_features)
    values = np.asarray(raw, dtype=np.float64)
    return RowVerdicts(
        score=score,
        threshold=decided.thresholds,
        p_value=decided.p_values,
        severity=decided.severities,
        segment=None if used is None else list(used),
        top_index=idx,
        top_share=share,
        observed=np.take_along_axis(values, idx, axis=1),
        expected=np.take_along_axis(scored.expected.astype(np.float64), idx, axis=1),
    )
