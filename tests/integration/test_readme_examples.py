"""The README's Python API example runs as written and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"

pytestmark = [pytest.mark.mlflow, pytest.mark.timeout(300)]


def _python_block(section: str) -> str:
    text = README.read_text()
    body = text.split(f"\n## {section}\n", 1)[1]
    found = re.search(r"```python\n(.*?)```", body, re.DOTALL)
    assert found, f"no python block under '## {section}'"
    return found.group(1)


def test_the_python_api_example_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # the default store (.streamvae) lands here
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(_python_block("Python API"), "README.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0] == "[0 1]"
    table = printed.getvalue()
    assert "threshold" in table and "top1_feature" in table
    assert "normal" in table and ("warning" in table or "critical" in table)
    assert lines[-1] in ("amount", "velocity", "account_age", "risk")
    assert (tmp_path / ".streamvae").is_dir()
