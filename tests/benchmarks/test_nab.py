"""NAB scores of streamvae on the NAB files in ../shared/data/nab (prints the table, writes JSON).

The same detector and defaults as ``streamvae bench nab`` (a dCVAE on calendar features
learns from each file's probationary part; the ``stream`` score, as ``serve`` computes it),
for seeds 0, 10 and 20, with points per second per file and for the whole run (training
included) and the per-file diagnosis of seed 0.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from streamvae.bench.nab import (
    FileResult,
    NabSettings,
    diagnose,
    evaluate_nab,
    format_diagnosis,
    format_report,
)
from streamvae.data.nab import load_nab

SCOREBOARD = (
    "NAB scoreboard (standard profile, full corpus): Numenta HTM 70.5, CAD OSE 69.9, "
    "KNN CAD 58.0, Random Cut Forest 51.7, Windowed Gaussian 39.6"
)


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
def test_nab_profile_scores(nab_dir):
    files = load_nab(nab_dir)
    overall: dict[str, list[float]] = {}
    for seed in (0, 10, 20):
        started = time.perf_counter()
        last = [started]
        rates: list[str] = []

        def timed(result: FileResult, last: list[float] = last, rates: list[str] = rates) -> None:
            now = time.perf_counter()
            points = len(result.file)
            rates.append(
                f"  {result.file.name:<60} {points:>6} points {points / (now - last[0]):>8.0f}/s"
            )
            last[0] = now

        report = evaluate_nab(files, NabSettings(model="dcvae", seed=seed), timed)
        seconds = time.perf_counter() - started
        total = sum(len(f) for f in files)
        print(f"\nseed {seed}\n{format_report(report)}")
        print("\n".join(rates))
        print(
            f"  {len(files)} files, {total} points in {seconds:.1f} s: {total / seconds:.0f} points/s"
        )
        if seed == 0:
            print(format_diagnosis(diagnose(report), report.profiles["standard"].threshold))
        for name, corpus in report.profiles.items():
            overall.setdefault(name, []).append(corpus.normalized)
    print("\nmean (min-max) over seeds: " + ", ".join(
        f"{k} {np.mean(v):.1f} ({min(v):.1f}-{max(v):.1f})" for k, v in overall.items()
    ))  # fmt: skip
    print(SCOREBOARD)
    out = Path(os.environ.get("STREAMVAE_BENCH_OUT", ".streamvae/bench"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "nab.json").write_text(json.dumps(overall, indent=2))
    assert all(0.0 <= np.mean(v) <= 100.0 for v in overall.values())
