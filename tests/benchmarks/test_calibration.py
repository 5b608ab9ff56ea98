"""Realised vs target false-positive rates on ADBench normals (prints a table, writes JSON).

Per data set and seed: train on 60 % of the normals, calibrate the conformal threshold on
another 20 % (with 90 % bootstrap intervals), then count alerts on the last 20 % of normals,
never seen before. The realised rate should scatter around the target and mostly fall inside
the reported interval.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from streamvae.thresholds import Bootstrap, calibrate_fpr
from tests.quality import DATASETS, train_novelty

TARGETS = (0.05, 0.01)


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
def test_realised_vs_target_fpr_on_adbench_normals(adbench_dir):
    rows = []
    for name in DATASETS:
        for seed in range(3):
            det, table, split, _ = train_novelty(
                adbench_dir / f"{name}.npz", seed, calibration_fraction=0.2
            )
            cal = det.select(det.score(table.features[split.calibration]))
            test_y = table.labels[split.test]
            test = det.select(det.score(table.features[split.test]))
            for alpha in TARGETS:
                if alpha < 1 / (cal.size + 1):
                    continue
                thr = calibrate_fpr(
                    cal,
                    alpha,
                    score_kind=det.bundle.score_kind,
                    bootstrap=Bootstrap(n_resamples=500, seed=seed),
                )
                realised = float(np.mean(test[test_y == 0] > thr.value))
                recall = float(np.mean(test[test_y == 1] > thr.value))
                lo, hi = thr.fpr_interval
                rows.append({
                    "dataset": name, "seed": seed, "target": alpha, "n_calibration": int(cal.size),
                    "n_test_normal": int((test_y == 0).sum()), "threshold": thr.value,
                    "fpr_interval": [lo, hi], "realised_fpr": realised,
                    "inside": lo <= realised <= hi, "recall": recall,
                })  # fmt: skip
    header = (
        "data set",
        "target",
        "n_cal",
        "realised FPR (3 seeds)",
        "mean",
        "in 90% CI",
        "recall",
    )
    print("\n{:<12} {:>7} {:>6} {:>26} {:>7} {:>9} {:>7}".format(*header))
    for name in DATASETS:
        for alpha in TARGETS:
            sel = [r for r in rows if r["dataset"] == name and r["target"] == alpha]
            if not sel:
                continue
            realised = " ".join(f"{r['realised_fpr']:.4f}" for r in sel)
            print(
                f"{name:<12} {alpha:>7.3f} {sel[0]['n_calibration']:>6} {realised:>26} "
                f"{np.mean([r['realised_fpr'] for r in sel]):>7.4f} "
                f"{sum(r['inside'] for r in sel):>7}/3 {np.mean([r['recall'] for r in sel]):>7.3f}"
            )
    inside = np.mean([r["inside"] for r in rows])
    print(
        f"realised FPR inside the reported 90% interval: {inside:.0%} of {len(rows)} calibrations"
    )
    out = Path(os.environ.get("BENCH_DIR", "bench-results"))
    out.mkdir(exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(rows, indent=2))
    assert rows
