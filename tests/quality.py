"""The ADBench novelty protocol on the shipped tabular default (quality test and benchmarks).

What is measured is what a user gets: ``configs/tabular.yaml`` unchanged, trained by the same
code as ``streamvae train`` (``build_bundle``: scaler, model, early stopping, the fused
score's neighbour index), without the MLflow logging around it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from streamvae.bundle import TabularDetector
from streamvae.config import TrainSettings, load_settings
from streamvae.data import Table, load_table, novelty_split
from streamvae.data.splits import NoveltySplit
from streamvae.scoring import average_precision, roc_auc
from streamvae.training import FitResult
from streamvae.workflows.train import build_bundle

ROOT = Path(__file__).resolve().parents[1]
TABULAR_CONFIG = ROOT / "configs" / "tabular.yaml"
# the 14 development sets of ../shared/data/adbench (the README's reference table)
DATASETS = (
    "4_breastw", "6_cardio", "38_thyroid", "32_shuttle", "14_glass", "18_Ionosphere",
    "19_landsat", "20_letter", "26_optdigits", "29_Pima", "35_SpamBase", "41_Waveform",
    "47_yeast", "7_Cardiotocography",
)  # fmt: skip


@dataclass(frozen=True)
class NoveltyResult:
    dataset: str
    seed: int
    auroc: float
    average_precision: float
    epochs: int
    train_seconds: float
    seconds: float


def default_settings(*overrides: str) -> TrainSettings:
    """The shipped ``configs/tabular.yaml`` (plus ``key=value`` overrides, for ablations)."""
    return load_settings(TrainSettings, TABULAR_CONFIG, overrides=list(overrides))


def train_novelty(
    path: Path, seed: int, *overrides: str, calibration_fraction: float = 0.0
) -> tuple[TabularDetector, Table, NoveltySplit, FitResult]:
    """Train the default on 60 % of the normals (split seeded by ``seed``).

    The model trains on all of the 60 % (``data.calibration_fraction=0``: AUROC needs no
    threshold); with ``calibration_fraction`` the split also keeps that share of the
    normals apart (``split.calibration``) for benchmarks that calibrate.
    """
    table = load_table(path)
    split = novelty_split(
        table.labels, seed=seed, train_fraction=0.6, calibration_fraction=calibration_fraction
    )
    settings = default_settings("data.calibration_fraction=0", *overrides)
    bundle, result, _ = build_bundle(settings, table.subset(split.train), [])
    return TabularDetector(bundle), table, split, result


def novelty_run(path: Path, seed: int, *overrides: str) -> NoveltyResult:
    """Train on 60 % of the normals (seeded), test on the other 40 % plus every anomaly."""
    started = time.perf_counter()
    det, table, split, result = train_novelty(path, seed, *overrides)
    trained = time.perf_counter() - started
    scores = det.select(det.score(table.features[split.test]))
    y = table.labels[split.test]
    return NoveltyResult(
        path.stem, seed, roc_auc(y, scores), average_precision(y, scores), result.epochs_run,
        trained, time.perf_counter() - started,
    )  # fmt: skip
