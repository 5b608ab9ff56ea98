"""The README's Python API example runs as written and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import numpy as np
import orjson
import polars as pl
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


def _bash_commands(section: str) -> list[list[str]]:
    """The commands of the first bash block under ``## section`` (comments dropped)."""
    text = README.read_text()
    body = text.split(f"\n## {section}\n", 1)[1]
    found = re.search(r"```bash\n(.*?)```", body, re.DOTALL)
    assert found, f"no bash block under '## {section}'"
    lines = [line for line in found.group(1).splitlines() if line and not line.startswith("#")]
    return [shlex.split(line) for line in lines]


def _your_data(tmp_path: Path) -> None:
    """A user's files: history with a few labelled anomalies, fresh normals, today's rows."""
    rng = np.random.default_rng(5)
    mix = rng.normal(size=(4, 4)) * 0.5 + np.eye(4)
    columns = ["amount", "velocity", "account_age", "risk"]

    def rows(n: int, odd: int = 0) -> pl.DataFrame:
        x = rng.normal(size=(n + odd, 4)) @ mix
        x[n:] += rng.choice([-6.0, 6.0], size=(odd, 4))
        frame = pl.DataFrame(x, schema=columns, orient="row")
        return frame.with_columns(pl.Series("label", [0] * n + [1] * odd))

    rows(3000, 30).write_csv(tmp_path / "history.csv")
    rows(1000, 20).write_csv(tmp_path / "holdout.csv")
    rows(190, 10).drop("label").write_csv(tmp_path / "today.csv")


@pytest.mark.kafka
def test_your_data_in_five_minutes_runs_as_written(tmp_path, monkeypatch, broker):
    """The four commands, in order, on a user's CSV files; serve reads a real broker.

    The only changes: the broker's address for ``localhost:9092``, unique topic names, and
    ``--max-messages`` so the service stops once it has scored what was sent.
    """
    from typer.testing import CliRunner

    from streamvae.cli import app
    from streamvae.config import KafkaSettings
    from streamvae.stream.admin import ensure_topics
    from streamvae.stream.tools import produce_all
    from tests.integration.kafka_helpers import Topics, read_json

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    _your_data(tmp_path)
    commands = _bash_commands("Your data in five minutes")
    assert [c[:2] for c in commands] == [
        ["streamvae", "train"], ["streamvae", "calibrate"], ["streamvae", "score"],
        ["streamvae", "serve"],
    ]  # fmt: skip
    runner = CliRunner()
    for command in commands[:3]:
        result = runner.invoke(app, command[1:])
        assert result.exit_code == 0, (command, result.output)
    report = tmp_path / ".streamvae" / "reports" / "payments-v1-calibration"
    assert report.with_suffix(".png").is_file() and report.with_suffix(".html").is_file()
    verdicts = pl.read_csv(tmp_path / "verdicts.csv")
    assert verdicts.height == 200
    assert verdicts["is_anomaly"][190:].sum() >= 8, "the shifted rows are flagged"
    assert verdicts["is_anomaly"][:190].sum() <= 10

    topics = Topics.unique()
    kafka = KafkaSettings(bootstrap_servers=broker)
    ensure_topics(kafka, (topics.input, topics.alerts, topics.dead))
    today = pl.read_csv(tmp_path / "today.csv")
    messages = [
        orjson.dumps({"id": f"t-{i}", "features": row})
        for i, row in enumerate(today.iter_rows(named=True))
    ]
    produce_all(broker, topics.input, messages)
    serve = [broker if arg == "localhost:9092" else arg for arg in commands[3][1:]]
    serve += ["--max-messages", str(len(messages)), "--idle-timeout", "60"]
    for setting, topic in (
        ("input_topic", topics.input), ("alert_topic", topics.alerts),
        ("dead_letter_topic", topics.dead), ("group_id", topics.group),
    ):  # fmt: skip
        serve += ["--set", f"kafka.{setting}={topic}"]
    result = runner.invoke(app, serve)
    assert result.exit_code == 0, result.output
    flagged = int(verdicts["is_anomaly"].sum())
    alerts = read_json(broker, topics.alerts, expected=flagged, partitions=1)
    assert sorted(a["id"] for a in alerts) == sorted(
        f"t-{i}" for i in np.flatnonzero(verdicts["is_anomaly"].to_numpy())
    ), "serve alerts on exactly the rows score flagged"
