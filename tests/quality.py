"""The ADBench novelty protocol (shared by the quality test and the benchmark)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from streamvae.bundle import Detector, ModelBundle, TabularPreprocess
from streamvae.data import FeatureSchema, StandardScaler, load_table, novelty_split
from streamvae.models import VAE, VAEConfig
from streamvae.scoring import average_precision, roc_auc
from streamvae.training import TrainConfig, fit

DATASETS = ("4_breastw", "6_cardio", "38_thyroid", "32_shuttle")


@dataclass(frozen=True)
class NoveltyResult:
    dataset: str
    seed: int
    auroc: float
    average_precision: float
    epochs: int
    seconds: float


def train_novelty(path: Path, seed: int, *, calibration_fraction: float = 0.0, beta: float = 1.0,
                  max_epochs: int = 200):  # fmt: skip
    """Train on 60 % of the normals (seeded); returns the detector, the table and the split."""
    table = load_table(path)
    split = novelty_split(
        table.labels, seed=seed, train_fraction=0.6, calibration_fraction=calibration_fraction
    )
    x_train = table.features[split.train]
    scaler = StandardScaler.fit(x_train)
    config = VAEConfig(input_dim=x_train.shape[1], latent_dim=8, hidden_dims=(64, 32), beta=beta)
    model, result = fit(
        lambda: VAE(config),
        scaler.transform(x_train),
        TrainConfig(epochs=max_epochs, patience=10, seed=seed, batch_size=128),
    )
    bundle = ModelBundle(
        "vae",
        asdict(config),
        model.state_dict(),
        TabularPreprocess(FeatureSchema(table.names), scaler),
    )
    return Detector(bundle), table, split, result


def novelty_run(
    path: Path, seed: int, *, beta: float = 1.0, max_epochs: int = 200
) -> NoveltyResult:
    """Train on 60 % of the normals (seeded), test on the other 40 % plus every anomaly."""
    started = time.perf_counter()
    det, table, split, result = train_novelty(path, seed, beta=beta, max_epochs=max_epochs)
    scores = det.select(det.score(table.features[split.test]))
    y = table.labels[split.test]
    return NoveltyResult(
        path.stem, seed, roc_auc(y, scores), average_precision(y, scores), result.epochs_run,
        time.perf_counter() - started,
    )  # fmt: skip
