"""The Prometheus rules in deploy/ are valid and their promtool unit tests pass."""

from __future__ import annotations

import json
import re
import runpy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import need

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"

pytestmark = pytest.mark.prometheus


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    need(exe is not None, "promtool not installed (apt-get install prometheus)")
    assert exe is not None
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, check=False)


def test_rules_pass_promtool_check():
    result = promtool("check", "rules", str(RULES / "streamvae.rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_deploy_prometheus_config_and_its_rule_files_pass_promtool():
    result = promtool("check", "config", str(RULES.parent / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


def test_rules_pass_their_promtool_unit_tests():
    result = promtool("test", "rules", str(RULES / "streamvae.rules.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_for_severity_and_a_runbook_section():
    groups = yaml.safe_load((RULES / "streamvae.rules.yml").read_text())["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    tested = (RULES / "streamvae.rules.test.yml").read_text()
    runbook = OPERATIONS.read_text().lower()
    assert len(alerts) >= 6
    for rule in alerts:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in ("page", "warning"), rule["alert"]
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert f"### {rule['alert'].lower()}" in runbook, f"no runbook section for {rule['alert']}"
        assert f"alertname: {rule['alert']}" in tested, f"{rule['alert']} has no promtool test"


def test_committed_rules_are_what_the_generator_writes():
    generator = runpy.run_path(str(RULES.parent / "make_rules.py"))
    committed = (RULES / "streamvae.rules.yml").read_text()
    assert committed == generator["render"](), "run python deploy/prometheus/make_rules.py"


def test_every_alert_names_its_service_and_model_and_every_burn_rate_has_two_windows():
    groups = yaml.safe_load((RULES / "streamvae.rules.yml").read_text())["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    for name, rule in alerts.items():
        if name == "StreamvaeAbsent":  # fleet-wide: there is no service to name
            continue
        assert "group_left (model, topic) job:streamvae_model:info" in rule["expr"], name
        assert "{{ $labels.job }}" in rule["annotations"]["summary"], name
    for slo in ("Latency", "DeadLetter"):
        for suffix in ("", "Slow"):
            expr = alerts[f"Streamvae{slo}BudgetBurn{suffix}"]["expr"]
            windows = re.findall(r"ratio_rate(\w+) >", expr)
            assert len(windows) == 8, (slo, suffix, windows)  # 2 x (long, short), joined twice
            for window in windows:
                assert any(r.endswith(f":ratio_rate{window}") for r in recorded), window


def test_committed_dashboard_is_what_the_generator_writes():
    deploy = RULES.parents[1]
    generator = runpy.run_path(str(deploy / "grafana" / "make_dashboard.py"))
    committed = json.loads((deploy / "grafana" / "dashboards" / "streamvae.json").read_text())
    assert committed == generator["dashboard"](), "run python deploy/grafana/make_dashboard.py"
    titles = [p["title"] for p in committed["panels"]]
    for wanted in ("Records scored", "Alert ratio vs calibrated", "Score / threshold", "latency",
                   "Consumer lag", "Dead letters by service", "Running replicas",
                   "Services up"):  # fmt: skip
        assert any(wanted in t for t in titles), wanted


def test_every_dashboard_query_is_filtered_by_every_variable_and_rates_use_the_rate_interval():
    deploy = RULES.parents[1]
    board = json.loads((deploy / "grafana" / "dashboards" / "streamvae.json").read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == {"datasource", "job", "instance", "model", "topic"}
    for name in ("job", "instance", "model", "topic"):
        assert variables[name]["multi"] and variables[name]["includeAll"], name
    stats = [p for p in board["panels"] if p["type"] == "stat"]
    assert len(stats) >= 5
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in board["annotations"]["list"]]
    for expr in exprs:
        for name in ("job", "instance", "model", "topic"):
            assert f"${name}" in expr, (name, expr)
        for window in re.findall(r"rate\([^\[]*\[([^\]]+)\]", expr):
            assert window == "$__rate_interval", expr
