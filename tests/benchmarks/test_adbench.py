"""The shipped tabular default vs KNN and IsolationForest on the 14 ADBench dev sets.

Novelty protocol, seeds 0-2: train on 60 % of the normals, test on the other 40 % plus every
anomaly. streamvae is ``configs/tabular.yaml`` unchanged (``tests.quality``); KNN (distance to
the 5th nearest training row) and IsolationForest (scikit-learn defaults) run on the same
splits, standardised with the training split's statistics. Prints the table and the means,
writes ``adbench.json``. ``ADBENCH_SETS=4_breastw,6_cardio`` runs a subset;
``ADBENCH_OVERRIDES="model.beta=2.0;model.latent_dim=4"`` measures another configuration
(``;``-separated ``key=value`` settings on top of the shipped file), for ablations.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors

from streamvae.data import load_table, novelty_split
from streamvae.scoring import average_precision, roc_auc
from tests.benchmarks.harness import write_json
from tests.quality import DATASETS, novelty_run


def _baselines(path, seed: int) -> dict[str, float]:
    table = load_table(path)
    split = novelty_split(table.labels, seed=seed, train_fraction=0.6)
    train, test = table.features[split.train], table.features[split.test]
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    train, test = (train - mean) / std, (test - mean) / std
    y = table.labels[split.test]
    knn = NearestNeighbors(n_neighbors=5).fit(train).kneighbors(test)[0][:, -1]
    forest = -IsolationForest(random_state=seed).fit(train).score_samples(test)
    return {
        "knn_auroc": roc_auc(y, knn), "knn_ap": average_precision(y, knn),
        "iforest_auroc": roc_auc(y, forest), "iforest_ap": average_precision(y, forest),
    }  # fmt: skip


@pytest.mark.benchmark
@pytest.mark.timeout(5400)
def test_adbench_default_vs_knn(adbench_dir):
    names = [n for n in os.environ.get("ADBENCH_SETS", ",".join(DATASETS)).split(",") if n]
    overrides = [o for o in os.environ.get("ADBENCH_OVERRIDES", "").split(";") if o.strip()]
    if overrides:
        print(f"\nsettings changed from the shipped default: {overrides}")
    rows = []
    for name in names:
        path = adbench_dir / f"{name}.npz"
        for seed in range(3):
            run = novelty_run(path, seed, *overrides)
            rows.append({
                "dataset": name, "seed": seed, "auroc": run.auroc, "ap": run.average_precision,
                "epochs": run.epochs, "train_s": run.train_seconds, **_baselines(path, seed),
            })  # fmt: skip
    keys = (
        "auroc",
        "ap",
        "knn_auroc",
        "knn_ap",
        "iforest_auroc",
        "iforest_ap",
        "train_s",
        "epochs",
    )
    means = {
        n: {k: float(np.mean([r[k] for r in rows if r["dataset"] == n])) for k in keys}
        for n in names
    }
    print(
        f"\n{'data set':<20} {'AUROC':>6} {'AP':>6} {'KNN':>6} {'KNN AP':>6} {'IF':>6} {'IF AP':>6} {'train s':>8} {'epochs':>6}"
    )
    for n, m in means.items():
        mark = "" if m["auroc"] >= m["knn_auroc"] else "  < KNN"
        print(
            f"{n:<20} {m['auroc']:>6.3f} {m['ap']:>6.3f} {m['knn_auroc']:>6.3f} {m['knn_ap']:>6.3f} "
            f"{m['iforest_auroc']:>6.3f} {m['iforest_ap']:>6.3f} {m['train_s']:>8.1f} {m['epochs']:>6.0f}{mark}"
        )
    overall = {k: float(np.mean([m[k] for m in means.values()])) for k in keys}
    wins = sum(m["auroc"] >= m["knn_auroc"] for m in means.values())
    print(
        f"{'mean':<20} {overall['auroc']:>6.3f} {overall['ap']:>6.3f} {overall['knn_auroc']:>6.3f} "
        f"{overall['knn_ap']:>6.3f} {overall['iforest_auroc']:>6.3f} {overall['iforest_ap']:>6.3f} "
        f"{overall['train_s']:>8.1f}"
    )
    print(
        f"at or above KNN on {wins} of {len(means)}; below 0.5: "
        f"{[n for n, m in means.items() if m['auroc'] < 0.5]}"
    )
    write_json(
        "adbench.json", {"runs": rows, "means": means, "overall": overall, "wins_vs_knn": wins}
    )
    assert all(np.isfinite([m["auroc"] for m in means.values()]))
