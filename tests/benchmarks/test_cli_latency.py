"""How fast the CLI answers: help, user errors, registry commands and a dead broker.

Each case runs the real CLI in a fresh interpreter (``python -m streamvae``), three times,
and prints the median wall time, the exit code and the first line it printed on stderr.
``CLI_SOURCE=/path/to/an/older/checkout`` measures that tree instead (it goes first on
``PYTHONPATH``), which is how the before/after table in the README was made; commands an
older tree lacks show its "No such command" exit. Writes ``cli_latency.json``.
No timing assertions: targets are read from the table (help < 1 s, user errors < 1.5 s,
an unreachable broker < 10 s).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.benchmarks.harness import write_json

RUNS = 3


def _cases(work: Path) -> dict[str, list[str]]:
    data, bad_yaml = work / "data.csv", work / "bad.yaml"
    model = "models:/bench@champion"
    return {
        "--help": ["--help"],
        "train --help": ["train", "--help"],
        "score: missing input file": [
            "score",
            model,
            str(work / "missing.csv"),
            str(work / "o.csv"),
        ],
        "calibrate: missing data file": ["calibrate", model, str(work / "missing.csv")],
        "train-kpi: missing history": ["train-kpi", str(work / "missing.csv")],
        "bad model URI (models:/)": ["thresholds", "show", "models:/"],
        "unknown model name (vea)": ["train", "--data", str(data), "-s", "model.name=vea"],
        "unknown setting (model.betta)": ["train", "--data", str(data), "-s", "model.betta=2"],
        "bad option value (--fpr 2)": ["calibrate", model, str(data), "--fpr", "2"],
        "YAML syntax error": ["train", "--data", str(data), "-c", str(bad_yaml)],
        "models (registry)": ["models"],
        "thresholds show (registry)": ["thresholds", "show", model],
        "unreachable broker": ["serve", "--bootstrap-servers", "127.0.0.1:1", "--model-uri", model],
    }


def _prepare(work: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame(rng.normal(size=(800, 4)), schema=["a", "b", "c", "d"], orient="row")
    frame.write_csv(work / "data.csv")
    (work / "bad.yaml").write_text("model:\n  beta: 2\n   latent_dim: 3\n")
    subprocess.run(
        [sys.executable, "-m", "streamvae", "train", "--data", str(work / "data.csv"),
         "-s", "training.epochs=2", "-s", "tracking.registered_model=bench",
         "--alias", "champion", "--quiet"],
        cwd=work, check=True, capture_output=True,
    )  # fmt: skip


def _run(args: list[str], work: Path, env: dict[str, str]) -> tuple[float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "streamvae", *args],
        cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return seconds, done.returncode, (lines[0] if lines else "")[:90]


@pytest.mark.benchmark
@pytest.mark.timeout(1800)
def test_cli_latency(tmp_path):
    _prepare(tmp_path)
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    source = os.environ.get("CLI_SOURCE")
    if source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    results = {}
    for name, args in _cases(tmp_path).items():
        runs = [_run(args, tmp_path, env) for _ in range(RUNS)]
        seconds = statistics.median(r[0] for r in runs)
        results[name] = {"seconds": seconds, "exit_code": runs[-1][1], "stderr": runs[-1][2]}
    print(f"\nCLI latency ({source or 'this tree'}; median of {RUNS} fresh interpreters)")
    for name, r in results.items():
        print(f"  {name:<32} {r['seconds']:6.2f} s  exit {r['exit_code']}  {r['stderr']}")
    write_json("cli_latency.json", {"source": source or "this tree", "cases": results})
    assert results["--help"]["exit_code"] == 0
