"""Mean AUROC / AP over seeds 0-2 on the four ADBench sets (prints a table, writes JSON)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from tests.quality import DATASETS, novelty_run

PEERS = "peers (platform-facts.md, same protocol): KNN 0.976, IForest 0.982, PyOD VAE 0.973"


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
def test_adbench_novelty_auroc(adbench_dir):
    results = [
        novelty_run(adbench_dir / f"{name}.npz", seed) for name in DATASETS for seed in range(3)
    ]
    print(f"\n{'data set':<12} {'AUROC':>7} {'AP':>7} {'epochs':>7} {'s/run':>7}")
    means = {}
    for name in DATASETS:
        rows = [r for r in results if r.dataset == name]
        means[name] = float(np.mean([r.auroc for r in rows]))
        print(
            f"{name:<12} {means[name]:>7.4f} {np.mean([r.average_precision for r in rows]):>7.4f} "
            f"{np.mean([r.epochs for r in rows]):>7.0f} {np.mean([r.seconds for r in rows]):>7.1f}"
        )
    print(f"{'mean':<12} {np.mean(list(means.values())):>7.4f}   ({PEERS})")
    out = Path(os.environ.get("BENCH_DIR", "bench-results"))
    out.mkdir(exist_ok=True)
    (out / "adbench.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    assert all(np.isfinite(list(means.values())))
