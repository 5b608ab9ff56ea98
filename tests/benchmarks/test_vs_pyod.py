"""Batch scoring and training next to PyOD's VAE, same data and machine (needs `.[bench]`).

Prints two tables and writes bench-results/vs_pyod.json. No timing assertions.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from streamvae.scoring import roc_auc
from tests.benchmarks.harness import write_json
from tests.quality import train_novelty

BATCH_SIZES = (1, 16, 256, 4096)
DATASETS = ("6_cardio", "32_shuttle")


def _pyod_vae(epochs: int):
    vae = pytest.importorskip("pyod.models.vae", reason="pip install -e '.[bench]'")
    return vae.VAE(epoch_num=epochs, batch_size=128, verbose=0, random_state=0, device="cpu")


def _rate(score, x: np.ndarray, batch: int, budget: int) -> float:
    rows = x[: max(batch, min(budget, x.shape[0]))]
    start = time.perf_counter()
    for i in range(0, rows.shape[0], batch):
        score(rows[i : i + batch])
    return rows.shape[0] / (time.perf_counter() - start)


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_training_and_batch_scoring_vs_pyod(adbench_dir):
    training, scoring = [], []
    for name in DATASETS:
        started = time.perf_counter()
        det, table, split, fit = train_novelty(adbench_dir / f"{name}.npz", seed=0)
        ours_s = time.perf_counter() - started
        x_train, x_test = table.features[split.train], table.features[split.test]
        y = table.labels[split.test]
        ours_auc = roc_auc(y, det.select(det.score(x_test)))
        pyod_epochs = 30  # PyOD's default epoch_num; it has no early stopping
        clf = _pyod_vae(pyod_epochs)
        started = time.perf_counter()
        clf.fit(x_train)
        pyod_s = time.perf_counter() - started
        pyod_auc = roc_auc(y, clf.decision_function(x_test))
        training.append({
            "dataset": name, "train_rows": int(x_train.shape[0]),
            "ours_epochs": fit.epochs_run, "ours_s": ours_s, "ours_s_per_epoch": ours_s / fit.epochs_run,
            "ours_auroc": ours_auc, "pyod_epochs": pyod_epochs, "pyod_s": pyod_s,
            "pyod_s_per_epoch": pyod_s / pyod_epochs, "pyod_auroc": pyod_auc,
        })  # fmt: skip
        if name == "32_shuttle":
            data = np.tile(x_test, (2, 1))
            for batch in BATCH_SIZES:
                budget = 2_000 if batch == 1 else 40_000
                scoring.append({
                    "batch": batch,
                    "ours_rows_per_s": _rate(det.score, data, batch, budget),
                    "pyod_rows_per_s": _rate(clf.decision_function, data, batch, budget),
                })  # fmt: skip
    print(f"\n{'data set':<11} {'rows':>6} | {'streamvae: epochs  s/epoch  total s  AUROC':>44} | "
          f"{'PyOD VAE: epochs  s/epoch  total s  AUROC':>42}")  # fmt: skip
    for r in training:
        print(f"{r['dataset']:<11} {r['train_rows']:>6} | {r['ours_epochs']:>25} {r['ours_s_per_epoch']:>8.3f} "
              f"{r['ours_s']:>8.1f} {r['ours_auroc']:>6.3f} | {r['pyod_epochs']:>23} "
              f"{r['pyod_s_per_epoch']:>8.3f} {r['pyod_s']:>8.1f} {r['pyod_auroc']:>6.3f}")  # fmt: skip
    print(f"\n{'batch':>6} {'streamvae rows/s':>17} {'PyOD VAE rows/s':>16}")
    for r in scoring:
        print(f"{r['batch']:>6} {r['ours_rows_per_s']:>17,.0f} {r['pyod_rows_per_s']:>16,.0f}")
    write_json("vs_pyod.json", {"training": training, "scoring": scoring})
