"""Pure score functions and detection metrics."""

from __future__ import annotations

from streamvae.scoring.diagnostics import (
    Diagnostics,
    diagnose,
    frechet_distance,
    latent_stats,
    mmd_to_standard_normal,
)
from streamvae.scoring.evaluation import (
    DetectionReport,
    average_precision,
    detection_report,
    roc_auc,
)
from streamvae.scoring.scores import ScoreSet, concat_score_sets, score_set, top_contributions

__all__ = [
    "DetectionReport",
    "Diagnostics",
    "ScoreSet",
    "average_precision",
    "concat_score_sets",
    "detection_report",
    "diagnose",
    "frechet_distance",
    "latent_stats",
    "mmd_to_standard_normal",
    "roc_auc",
    "score_set",
    "top_contributions",
]
