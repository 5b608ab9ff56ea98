# ruff: noqa: E501  (PromQL expressions read best on one line)
"""Writes deploy/prometheus/rules/streamvae.rules.yml: recording rules, SLOs and alerts.

Run `python deploy/prometheus/make_rules.py` after changing a setting below; the YAML is
committed, `promtool test rules deploy/prometheus/rules/streamvae.rules.test.yml` tests every
rule and tests/integration/test_prometheus_rules.py checks that the committed file is what
this script writes.

**A service is a Prometheus `job`** (one scrape job per deployment: the compose service, a
Kubernetes Service behind a ServiceMonitor); its replicas are the job's `instance`s. Every
alert carries `job` and, joined from `streamvae_model_info` (one series per process, so no
extra cardinality on the per-record metrics), the `model` it serves and the input `topic`.

Settings (documented in docs/operations.md, "Service-level objectives"):
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

LATENCY_SLO_SECONDS = "1.0"
"""A record is on time when it is scored within this long of its timestamp. Must be a bucket
boundary of `streamvae_end_to_end_latency_seconds` (as Prometheus prints it in `le`)."""
LATENCY_OBJECTIVE = 0.99
"""Share of scored records that must be on time (over the SLO period)."""
DEAD_LETTER_OBJECTIVE = 0.99
"""Share of consumed records that must not be dead-lettered."""
SLO_PERIOD = "30d"
"""The period the error budgets are defined over (the burn rates below assume 30 days)."""
RUNBOOK_BASE = "docs/operations.md"
"""Where the runbooks are served; each alert links `RUNBOOK_BASE#<alert name, lower case>`."""

# Multi-window, multi-burn-rate alerting (Google SRE workbook, "Alerting on SLOs"): each row
# fires when the error rate over both windows exceeds `burn x (1 - objective)`. A burn rate
# of 14.4 over 1 h spends 2 % of a 30-day budget; 6 over 6 h, 5 %; 3 over 1 d, 10 %; 1 over
# 3 d, 10 %. The short window makes the alert stop soon after the problem does.
BURN_RATES: dict[str, list[tuple[str, str, float]]] = {
    "page": [("1h", "5m", 14.4), ("6h", "30m", 6.0)],
    "warning": [("1d", "2h", 3.0), ("3d", "6h", 1.0)],
}
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")

MODEL_INFO = "job:streamvae_model:info"


def with_model(expr: str) -> str:
    """``expr`` (with a ``job`` label) plus the ``model`` and ``topic`` labels of its service.

    The right side is one series per job (:data:`MODEL_INFO`), so the join cannot fail on
    duplicates; a job without model information still alerts, without those labels.
    """
    return f"({expr}) * on (job) group_left (model, topic) {MODEL_INFO} or on (job) ({expr})"


def runbook(alert: str) -> str:
    """The alert's ``runbook_url``: its section of the operations guide."""
    return f"{RUNBOOK_BASE}#{alert.lower()}"


def alert(
    name: str, expr: str, for_: str, severity: str, summary: str, *, join: bool = True
) -> dict[str, Any]:
    """One alerting rule; ``join``: labelled with its service's model and topic."""
    return {
        "alert": name,
        "expr": with_model(expr) if join else expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "runbook_url": runbook(name)},
    }


def recording_rules() -> list[dict[str, str]]:
    """Rates and quantiles the alerts (and ad-hoc queries) use, per service (``job``)."""
    return [
        {
            "record": MODEL_INFO,
            "expr": 'max by (job, model, topic) (label_replace(topk by (job) (1, max by (job, name, topic) (streamvae_model_info)), "model", "$1", "name", "(.*)"))',
        },
        {
            "record": "job:streamvae_records_consumed:rate5m",
            "expr": "sum by (job) (rate(streamvae_records_consumed_total[5m]))",
        },
        {
            "record": "job:streamvae_records_scored:rate5m",
            "expr": "sum by (job) (rate(streamvae_records_scored_total[5m]))",
        },
        {
            "record": "job:streamvae_alerts:rate5m",
            "expr": "sum by (job) (rate(streamvae_alerts_total[5m]))",
        },
        {
            "record": "job:streamvae_alert_ratio:rate5m",
            "expr": "job:streamvae_alerts:rate5m / job:streamvae_records_scored:rate5m",
        },
        {
            "record": "job:streamvae_consumer_lag_records:sum",
            "expr": "sum by (job) (streamvae_consumer_lag_records)",
        },
        {
            "record": "job:streamvae_end_to_end_latency_seconds:p99_5m",
            "expr": "histogram_quantile(0.99, sum by (job, le) (rate(streamvae_end_to_end_latency_seconds_bucket[5m])))",
        },
        {
            "record": "job:streamvae_scoring_duration_seconds:p99_5m",
            "expr": "histogram_quantile(0.99, sum by (job, le) (rate(streamvae_scoring_duration_seconds_bucket[5m])))",
        },
    ]


def slo_rules() -> list[dict[str, str]]:
    """Error ratios of both SLOs over every window the burn-rate alerts look at."""
    rules = []
    for w in WINDOWS:
        rules.append({
            "record": f"job:streamvae_latency_slo_errors:ratio_rate{w}",
            "expr": (
                f'1 - sum by (job) (rate(streamvae_end_to_end_latency_seconds_bucket{{le="{LATENCY_SLO_SECONDS}"}}[{w}]))'
                f" / sum by (job) (rate(streamvae_end_to_end_latency_seconds_count[{w}]))"
            ),
        })  # fmt: skip
    for w in WINDOWS:
        rules.append({
            "record": f"job:streamvae_dead_letter:ratio_rate{w}",
            "expr": (
                f"sum by (job) (rate(streamvae_records_dead_lettered_total[{w}]))"
                f" / sum by (job) (rate(streamvae_records_consumed_total[{w}]))"
            ),
        })  # fmt: skip
    return rules


def burn_rate_expr(ratio: str, objective: float, severity: str) -> str:
    """``(long > burn * budget and short > burn * budget) or ...`` for one severity."""
    budget = round(1.0 - objective, 10)
    parts = [
        f"(job:{ratio}:ratio_rate{long} > {burn} * {budget} and job:{ratio}:ratio_rate{short} > {burn} * {budget})"
        for long, short, burn in BURN_RATES[severity]
    ]
    return " or ".join(parts)


def slo_alerts() -> list[dict[str, Any]]:
    """A page and a warning burn-rate alert for each SLO."""
    late = f"{float(LATENCY_SLO_SECONDS):g} s"
    latency_budget = f"{1 - LATENCY_OBJECTIVE:.2%}"
    dead_budget = f"{1 - DEAD_LETTER_OBJECTIVE:.2%}"
    out = []
    for severity, suffix, when in (("page", "", "fast"), ("warning", "Slow", "slowly")):
        out.append(alert(
            f"StreamvaeLatencyBudgetBurn{suffix}",
            burn_rate_expr("streamvae_latency_slo_errors", LATENCY_OBJECTIVE, severity),
            "2m" if severity == "page" else "15m", severity,
            f"{{{{ $labels.job }}}} ({{{{ $labels.model }}}}): {{{{ $value | humanizePercentage }}}} of records scored later than {late} after their timestamp; the budget is {latency_budget}, burning {when}",
        ))  # fmt: skip
        out.append(alert(
            f"StreamvaeDeadLetterBudgetBurn{suffix}",
            burn_rate_expr("streamvae_dead_letter", DEAD_LETTER_OBJECTIVE, severity),
            "2m" if severity == "page" else "15m", severity,
            f"{{{{ $labels.job }}}} ({{{{ $labels.model }}}}): {{{{ $value | humanizePercentage }}}} of records dead-lettered; the budget is {dead_budget}, burning {when}",
        ))  # fmt: skip
    return out


def alerts() -> list[dict[str, Any]]:
    """Every alert; each names its service (``job``), model and topic."""
    return [
        alert(
            "StreamvaeAlertStorm",
            "job:streamvae_alert_ratio:rate5m > 10 * max by (job) (streamvae_expected_alert_ratio) and job:streamvae_records_scored:rate5m > 1",
            "10m",
            "page",
            "{{ $labels.job }} ({{ $labels.model }}): alert rate {{ $value | humanizePercentage }} is over 10x the calibrated rate",
        ),
        alert(
            "StreamvaeDetectorSilent",
            "job:streamvae_records_consumed:rate5m > 0 and job:streamvae_records_scored:rate5m == 0",
            "10m",
            "page",
            "{{ $labels.job }} ({{ $labels.model }}) consumes {{ $value | humanize }} records/s but scores none",
        ),
        alert(
            "StreamvaeConsumerLagGrowing",
            "job:streamvae_consumer_lag_records:sum > 10000 and deriv(job:streamvae_consumer_lag_records:sum[10m]) > 0",
            "15m",
            "warning",
            "{{ $labels.job }} ({{ $labels.model }}): consumer lag {{ $value | humanize }} records and growing",
        ),
        *slo_alerts(),
        alert(
            "StreamvaeScoringErrors",
            "sum by (job, kind) (increase(streamvae_errors_total[5m])) > 0",
            "1m",
            "page",
            "{{ $labels.job }} ({{ $labels.model }}): {{ $labels.kind }} errors in the last 5 minutes: {{ $value | humanize }}",
        ),
        alert(
            "StreamvaeNoModelLoaded",
            "min by (job, instance) (streamvae_up) == 0",
            "5m",
            "page",
            "{{ $labels.job }} replica {{ $labels.instance }} is not scoring: no model loaded or the loop stopped",
        ),
        alert(
            "StreamvaeAbsent",
            "absent(streamvae_model_info)",
            "10m",
            "page",
            "no streamvae service exports a model: every replica is down or unscraped",
            join=False,
        ),
        alert(
            "StreamvaeReplicaDown",
            "up == 0 and on (job, instance) max_over_time(streamvae_up[1d]) >= 0",
            "5m",
            "page",
            "{{ $labels.job }} replica {{ $labels.instance }} cannot be scraped",
        ),
        alert(
            "StreamvaeModelRefused",
            'sum by (job) (increase(streamvae_model_reloads_total{result="refused"}[15m])) > 0',
            "1m",
            "warning",
            "{{ $labels.job }} ({{ $labels.model }}) refused a new model version; the previous one keeps serving",
        ),
    ]


def rules() -> dict[str, Any]:
    """The whole rule file."""
    return {
        "groups": [
            {"name": "streamvae.recording", "interval": "30s", "rules": recording_rules()},
            {"name": "streamvae.slo", "interval": "30s", "rules": slo_rules()},
            {"name": "streamvae.alerts", "rules": alerts()},
        ]
    }


HEADER = f"""\
# Generated by deploy/prometheus/make_rules.py: edit the settings there and rerun it.
# Check:  promtool check rules deploy/prometheus/rules/streamvae.rules.yml
# Test:   promtool test rules deploy/prometheus/rules/streamvae.rules.test.yml
# A service is a Prometheus job; alerts carry job, model and topic, and link a runbook in
# {RUNBOOK_BASE}. SLOs ({SLO_PERIOD}): {LATENCY_OBJECTIVE:.1%} of records scored within {float(LATENCY_SLO_SECONDS):g} s of their
# timestamp; {DEAD_LETTER_OBJECTIVE:.1%} of consumed records not dead-lettered.
"""


def render() -> str:
    """The file's text."""
    return HEADER + yaml.safe_dump(rules(), sort_keys=False, width=1000)


def main() -> None:
    """Write the YAML next to this script."""
    out = Path(__file__).resolve().parent / "rules" / "streamvae.rules.yml"
    out.write_text(render(), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
