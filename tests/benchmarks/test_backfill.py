"""Backfill: ``streamvae score`` on a CSV larger than the chunks it reads, in bounded memory.

Generates a CSV of at least ``BACKFILL_GB`` GB (default 2) of 30-feature rows with an id
column, scores it with the fused default-sized model through the real CLI (a subprocess),
and prints the file size, rows, seconds, rows/s and the scorer's peak RSS (``getrusage`` of
the child). A control run on a file a tenth of the size shows that peak memory does not grow
with the input. Writes ``backfill.json``. No timing assertions.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from streamvae.bundle import save_bundle
from tests.benchmarks.harness import D, write_json
from tests.benchmarks.test_fused_scoring import _fused_like_the_default
from tests.factories import feature_names, make_anomalies, make_bundle, make_normal

BLOCK = 200_000


def _write_csv(path: Path, target_bytes: int) -> int:
    """Append blocks of rows until the file holds ``target_bytes``; returns the rows."""
    names = list(feature_names(D))
    rows = 0
    with path.open("wb") as out:
        block = 0
        while out.tell() < target_bytes:
            x = make_normal(BLOCK, D, seed=block).astype(np.float64)
            x[::500] = make_anomalies(x[::500].shape[0], D, seed=block)
            frame = pl.DataFrame(x.round(6), schema=names, orient="row").with_columns(
                pl.int_range(rows, rows + BLOCK).alias("txn_id")
            )
            frame.write_csv(out, include_header=block == 0)
            rows += BLOCK
            block += 1
    return rows


PEAK = (
    "import resource, sys\n"
    "from streamvae.cli import app\n"
    "try:\n"
    "    app(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    assert not exc.code, exc.code\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)
"""Runs the CLI in a fresh interpreter and reports that process's own peak RSS (KiB)."""


def _score(model: Path, source: Path, output: Path, work: Path) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK, "score", str(model), str(source), str(output),
         "--quiet", "--id-column", "txn_id", "--work-dir", str(work)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    peak_kib = int(done.stderr.strip().splitlines()[-1])
    return {"seconds": seconds, "peak_rss_mib": peak_kib / 1024}


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_backfill_a_large_csv_in_bounded_memory(tmp_path):
    gigabytes = float(os.environ.get("BACKFILL_GB", "2"))
    model = save_bundle(_fused_like_the_default(make_bundle(d=D, epochs=5, fused=True)),
                        tmp_path / "model")  # fmt: skip
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    small_rows = _write_csv(small, int(gigabytes * 1e9 / 10))
    small_run = _score(model, small, tmp_path / "small.parquet", tmp_path / "w")
    large_rows = _write_csv(large, int(gigabytes * 1e9))
    large_run = _score(model, large, tmp_path / "large.parquet", tmp_path / "w")
    out = pl.scan_parquet(tmp_path / "large.parquet")
    scored = out.select(pl.len()).collect().item()
    flagged = out.filter(pl.col("is_anomaly")).select(pl.len()).collect().item()
    results = {
        "file_gb": large.stat().st_size / 1e9,
        "rows": large_rows,
        "rows_out": scored,
        "anomalies": flagged,
        "seconds": large_run["seconds"],
        "rows_per_second": large_rows / large_run["seconds"],
        "peak_rss_mib": large_run["peak_rss_mib"],
        "control_file_gb": small.stat().st_size / 1e9,
        "control_rows_per_second": small_rows / small_run["seconds"],
        "control_peak_rss_mib": small_run["peak_rss_mib"],
    }
    print(
        "\nbackfill (streamvae score, CSV in, Parquet out, fused default-sized model, 30 features)"
    )
    for key, value in results.items():
        print(f"  {key:<26} {value:,.2f}" if isinstance(value, float) else f"  {key:<26} {value:,}")
    write_json("backfill.json", results)
    assert scored == large_rows
