"""`streamvae demo` from the installed console script, as a user runs it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.mlflow, pytest.mark.slow, pytest.mark.timeout(300)]


def _value(output: str, label: str) -> str:
    match = re.search(rf"{re.escape(label)}\s*│\s*([^│]+?)\s*│", output)
    assert match, f"{label!r} not in the table:\n{output}"
    return match.group(1)


def test_demo_prints_its_table_in_under_three_minutes(tmp_path):
    exe = shutil.which("streamvae") or f"{sys.executable} -m streamvae"
    started = time.monotonic()
    proc = subprocess.run(
        [*exe.split(), "demo", "--work-dir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=280, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(tmp_path)},
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert _value(out, "records streamed") == "507"
    assert _value(out, "records scored") == "507"
    assert _value(out, "malformed messages dead-lettered") == "3"
    assert float(_value(out, "AUROC of streamed scores")) > 0.85
    assert float(_value(out, "precision")) > 0.5
    assert int(_value(out, "alerts")) > 0
    assert "http://127.0.0.1:" in _value(out, "metrics URL (live while the demo runs)")
    assert elapsed < 180
    assert (tmp_path / "work" / "mlflow.db").is_file(), "--work-dir keeps the MLflow store"
