"""Out-of-core training: a generated Parquet directory of STREAMVAE_OOC_GB (default 1) GB.

30 float32 features from a low-rank Gaussian (8 factors plus noise), written as files of
one million rows (5.8 GB asked: 5.37 GB of Parquet on disk). ``streamvae train --data DIR`` runs in its own process (the shipped
defaults, automatic budget); the benchmark reports its peak RSS, the rows/s of each pass,
and the AUROC on a held-out test set (normals plus rows off the factor subspace) next to
in-memory training on a 200,000-row sample of the same data (anomalies: rows on the factor
subspace with twice the normal noise off it). With STREAMVAE_OOC_PROCS=N (N > 1) the same
data is also trained by N processes under ``torchrun`` (gloo), each reading its own share:
seconds, the largest rank's peak RSS and the AUROC. Prints a table and writes
bench-results/out_of_core.json. No timing assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from streamvae.bundle import TabularDetector
from streamvae.config import TrackingSettings
from streamvae.scoring import roc_auc
from streamvae.tracking import configure, load_resolved, resolve
from tests.benchmarks.harness import write_json

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(7200)]

D, FACTORS, FILE_ROWS = 30, 8, 1_000_000
ROW_BYTES = 4 * D  # float32, about what Parquet keeps of noisy floats


def _generator(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(FACTORS, D)).astype(np.float32)


def _normals(n: int, seed: int, mixing: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, FACTORS)).astype(np.float32)
    return z @ mixing + 0.3 * rng.normal(size=(n, D)).astype(np.float32)


def _write(directory: Path, gigabytes: float, mixing: np.ndarray) -> int:
    rows = int(gigabytes * 1e9 / ROW_BYTES)
    names = [f"f{j:02d}" for j in range(D)]
    for i, start in enumerate(range(0, rows, FILE_ROWS)):
        x = _normals(min(FILE_ROWS, rows - start), 1000 + i, mixing)
        pl.DataFrame({n: x[:, j] for j, n in enumerate(names)}).write_parquet(
            directory / f"part-{i:04d}.parquet", row_group_size=131_072
        )
    return rows


def _train(data: Path, store: Path, name: str, processes: int = 1) -> dict[str, float]:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork + exec, so a child would
    # report the (larger) parent's high-water mark
    code = (
        "import re, time\n"
        "from streamvae.cli import main\n"
        "t = time.perf_counter()\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('SECONDS', time.perf_counter() - t)\n"
        "status = open('/proc/self/status').read()\n"
        "print('PEAK_RSS_KB', re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
    )
    launch = [sys.executable]
    if processes > 1:  # every rank runs the same code and prints its own figures
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        launch = [torchrun, "--standalone", f"--nproc-per-node={processes}", "--no-python",
                  sys.executable]  # fmt: skip
    args = [
        *launch, "-c", code, "train", "--data", str(data), "--tracking-uri",
        f"sqlite:///{store / 'mlflow.db'}", "-s", f"tracking.work_dir={store}",
        "-s", f"tracking.registered_model={name}", "-s", "training.device=cpu", "--json",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    figures: dict[str, list[float]] = {"SECONDS": [], "PEAK_RSS_KB": []}
    for line in done.stdout.splitlines():  # one of each per rank
        key, _, value = line.partition(" ")
        if key in figures:
            figures[key].append(float(value))
    out = json.loads(done.stdout[done.stdout.index("{") : done.stdout.rindex("}") + 1])
    return {
        "seconds": max(figures["SECONDS"]),
        "peak_rss_mb": max(figures["PEAK_RSS_KB"]) / 1024,  # of the largest rank
        "train_rows": int(str(out["train / calibration rows"]).split(" / ")[0]),
        "epochs": int(str(out["epochs run / best"]).split(" / ")[0]),
    }


def _auroc(store: Path, name: str, test: np.ndarray, labels: np.ndarray, work: Path) -> float:
    configure(TrackingSettings(tracking_uri=f"sqlite:///{store / 'mlflow.db'}"))
    detector = TabularDetector(load_resolved(resolve(f"models:/{name}/1", work / name)))
    return roc_auc(labels, detector.select(detector.score(test)))


def test_out_of_core_training(tmp_path):
    gigabytes = float(os.environ.get("STREAMVAE_OOC_GB", "1"))
    mixing = _generator(0)
    data = tmp_path / "data"
    data.mkdir()
    started = time.perf_counter()
    rows = _write(data, gigabytes, mixing)
    written_s = time.perf_counter() - started
    on_disk = sum(p.stat().st_size for p in data.glob("*.parquet")) / 1e9
    sample = tmp_path / "sample.parquet"
    pl.scan_parquet(str(data / "*.parquet")).head(200_000).collect().write_parquet(sample)
    normal = _normals(5000, 7, mixing)
    rng = np.random.default_rng(8)  # anomalies: on the factors, twice the noise off them
    z = rng.normal(size=(500, FACTORS)).astype(np.float32)
    odd = z @ mixing + 0.6 * rng.normal(size=(500, D)).astype(np.float32)
    test, labels = np.vstack([normal, odd]), np.r_[np.zeros(5000), np.ones(500)]

    store = tmp_path / "store"
    streamed = _train(data, store, "streamed")
    in_memory = _train(sample, store, "sample")
    figures = {
        "gigabytes_on_disk": round(on_disk, 2),
        "rows": rows,
        "write_seconds": round(written_s, 1),
        "streamed": streamed | {"auroc": _auroc(store, "streamed", test, labels, tmp_path)},
        "in_memory_200k_sample": in_memory
        | {"auroc": _auroc(store, "sample", test, labels, tmp_path)},
        "machine_ram_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "rows_per_s_end_to_end": round(rows / streamed["seconds"]),
    }
    processes = int(os.environ.get("STREAMVAE_OOC_PROCS", "1"))
    if processes > 1:
        ranks = _train(data, store, "torchrun", processes)
        figures[f"torchrun_{processes}_processes"] = ranks | {
            "auroc": _auroc(store, "torchrun", test, labels, tmp_path),
            "rows_per_s_end_to_end": round(rows / ranks["seconds"]),
        }
    print(json.dumps(figures, indent=2))
    write_json("out_of_core.json", figures)
    # the split: 20 % calibrate, 20 % of the rest stop early, the other 64 % train
    assert abs(streamed["train_rows"] / rows - 0.64) < 0.01
