"""A real Prometheus scrapes a real service: every dashboard query and rule has data.

So no Grafana panel and no rule can point at a metric the service does not export.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from streamvae.stream.embedded import free_port
from streamvae.stream.tools import produce_all
from tests.conftest import need
from tests.factories import encode, feature_message, make_anomalies, make_normal
from tests.integration.kafka_helpers import Topics, running_service, serve_settings

pytestmark = [pytest.mark.prometheus, pytest.mark.kafka, pytest.mark.timeout(300)]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "streamvae.rules.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "streamvae.json"


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def _query(base: str, expr: str) -> list:
    data = _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert data["status"] == "success", (expr, data)
    return data["data"]["result"]


@pytest.fixture
def prometheus(tmp_path):
    exe = shutil.which("prometheus")
    need(exe is not None, "prometheus not installed (apt-get install prometheus)")
    assert exe is not None

    def start(target: str) -> str:
        rules = yaml.safe_load(RULES.read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"  # evaluate the recording rules within the test
        (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "scrape_configs": [
                {"job_name": "streamvae", "static_configs": [{"targets": [target]}]}
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

    procs: list[subprocess.Popen] = []
    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def _dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def test_every_panel_query_and_rule_returns_data_from_the_real_service(
    broker, bundle_dir, tmp_path, prometheus
):
    topics = Topics.unique()
    settings = serve_settings(broker, topics, bundle_dir, tmp_path)
    settings = settings.model_copy(update={"metrics_port": free_port()})
    normal = [encode(feature_message(r, rid=f"n{i}")) for i, r in enumerate(make_normal(400))]
    odd = [encode(feature_message(r * 3, rid=f"a{i}")) for i, r in enumerate(make_anomalies(40))]
    with running_service(settings) as running:
        base = prometheus(f"127.0.0.1:{settings.metrics_port}")
        for round_ in range(12):  # a steady stream for rates and histogram quantiles
            produce_all(broker, topics.input, normal[round_ * 30 : round_ * 30 + 30] + odd[:3])
            produce_all(broker, topics.input, [b"{not json"])
            time.sleep(0.5)
        time.sleep(3)
        assert running.service.metrics_url
        missing = [expr for expr in _dashboard_queries() if not _query(base, expr)]
        assert not missing, f"dashboard queries without data: {missing}"
        groups = yaml.safe_load(RULES.read_text())["groups"]
        recorded = [r["record"] for g in groups for r in g["rules"] if "record" in r]
        assert recorded
        silent = [name for name in recorded if not _query(base, name)]
        assert not silent, f"recording rules without data: {silent}"
        # raw metric names (not the job:...:rate5m recording names built from them)
        names = set(re.findall(r"(?<![:\w])streamvae_[a-z_]+", RULES.read_text()))
        absent = [
            n for n in sorted(names)
            if not _query(base, f'{{__name__=~"{n}|{n}_bucket"}}')
        ]  # fmt: skip
        assert not absent, f"rules use metrics the service does not export: {absent}"
        assert not _query(base, 'ALERTS{alertname="StreamvaeNoModelLoaded"}')
