"""A real Prometheus for the tests, the deploy/ rules it loads, and the dashboard's queries.

The dashboard's queries hold Grafana variables; :func:`grafana_expr` substitutes them as
Grafana does for a Prometheus data source (a multi-value selection becomes a regex
alternation, "All" becomes ``.*``) so that the test runs exactly what a panel would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamvae.stream.embedded import free_port
from tests.conftest import need

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "streamvae.rules.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "streamvae.json"
RATE_INTERVAL = "10s"
"""What ``$__rate_interval`` stands for here: the test scrapes every second."""


def get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def query(base: str, expr: str) -> list[dict[str, Any]]:
    """An instant query's result vector (asserting the query itself succeeded)."""
    data = get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert data["status"] == "success", (expr, data)
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def dashboard_queries() -> list[str]:
    """Every panel query (rows carry none)."""
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def grafana_expr(expr: str, **values: str) -> str:
    """``expr`` with ``$__rate_interval`` and each ``$name`` replaced (default ``.*``: All)."""
    out = expr.replace("$__rate_interval", RATE_INTERVAL)
    for name in ("instance", "model", "topic", "job"):
        out = out.replace(f"${name}", values.get(name, ".*"))
    assert "$" not in out.replace('"$1"', ""), f"unsubstituted variable in {out}"
    return out


def rules_for_test(rules: Path, *, immediate: bool) -> dict[str, Any]:
    """deploy/'s rules evaluated every second; ``immediate``: alerts fire without ``for``."""
    loaded: dict[str, Any] = yaml.safe_load(rules.read_text())
    for group in loaded["groups"]:
        group["interval"] = "1s"
        if immediate:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = "0s"
    return loaded


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Starts a real Prometheus: ``start({job: [target, ...]}, immediate=False) -> base URL``.

    It scrapes every second and evaluates deploy/'s rules every second.
    """
    exe = shutil.which("prometheus")
    need(exe is not None, "prometheus not installed (apt-get install prometheus)")
    assert exe is not None
    procs: list[subprocess.Popen[bytes]] = []

    def start(jobs: dict[str, list[str]], *, immediate: bool = False) -> str:
        rules = rules_for_test(RULES, immediate=immediate)
        (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]}
                for job, targets in jobs.items()
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        proc = subprocess.Popen(
            [
                exe, f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=1)
                return base
            except OSError:
                time.sleep(0.2)
        pytest.fail("prometheus did not become ready")
        return base

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)
