"""The Prometheus rules in deploy/ are valid and their promtool unit tests pass."""

from __future__ import annotations

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
