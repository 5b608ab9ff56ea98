# ruff: noqa: E501  (PromQL expressions read best on one line)
"""Writes deploy/grafana/dashboards/streamvae.json: the streamvae fleet dashboard.

Run `python deploy/grafana/make_dashboard.py` after changing a panel; the JSON is committed and
tests/integration/test_prometheus_fleet.py runs every query, with the variables set to each
service in turn, against a real Prometheus scraping several real services. Plain dicts
(Grafana's dashboard schema v39), no extra dependency.

**A service is a Prometheus `job`**, its replicas the job's `instance`s. The variables pick
services (`job`), replicas (`instance`), registered models (`model`) and input topics
(`topic`); the model and topic live only on `streamvae_model_info` (one series a process),
so every query keeps the series of the selected jobs and instances and then keeps only the
processes whose model information matches (`and on (job, instance) <model info>`): the
per-record metrics need no model label and a new model version creates no new series.
Queries break down by `job` (a legend per service) wherever a sum would hide one service's
problem inside another's traffic, and rates use Grafana's `$__rate_interval`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
SCOPE = 'job=~"$job", instance=~"$instance"'
MODEL_INFO = f'streamvae_model_info{{{SCOPE}, name=~"$model", topic=~"$topic"}}'


def sel(metric: str, extra: str = "") -> str:
    """``metric`` of the selected services, replicas, models and topics."""
    labels = SCOPE + (f", {extra}" if extra else "")
    return f"({metric}{{{labels}}} and on (job, instance) {MODEL_INFO})"


def rate(metric: str, extra: str = "") -> str:
    """Per-second rate of a counter of the selected processes (before any aggregation)."""
    return f"(rate({metric}{{{SCOPE}{', ' + extra if extra else ''}}}[{RATE}]) and on (job, instance) {MODEL_INFO})"


def quantile(q: float, histogram: str, by: str = "job") -> str:
    """The ``q`` quantile of a histogram of the selected processes, per ``by``."""
    return f"histogram_quantile({q}, sum by ({by}, le) {rate(histogram + '_bucket')})"


def target(legend: str, expr: str, *, instant: bool = False, table: bool = False) -> dict[str, Any]:
    """One query of a panel (an instant query, in table format, for tables)."""
    out: dict[str, Any] = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
    if instant:
        out["instant"] = True
        out["range"] = False
    if table:
        out["format"] = "table"
    return out


# --- the top row: one glance at the fleet ------------------------------------------------
STATS: list[tuple[str, str, list[dict[str, Any]], str]] = [
    (
        "Services up",
        "none",
        [target("services", f"count(count by (job) ({sel('streamvae_up')} == 1))")],
        "Services (jobs) with at least one replica scoring.",
    ),
    (
        "Replicas scoring",
        "none",
        [target("{{job}}", f"sum by (job) {sel('streamvae_up')}")],
        "Replicas whose scoring loop runs, per service; a replica that cannot be scraped drops out (StreamvaeReplicaDown pages).",
    ),
    (
        "Consumer lag (records)",
        "short",
        [target("{{job}}", f"sum by (job) {sel('streamvae_consumer_lag_records')}")],
        "Records behind the high watermark, summed over each service's partitions.",
    ),
    (
        "Alert ratio / calibrated",
        "none",
        [
            target(
                "{{job}}",
                f"(sum by (job) {rate('streamvae_alerts_total')} / sum by (job) {rate('streamvae_records_scored_total')}) / max by (job) {sel('streamvae_expected_alert_ratio')}",
            )
        ],
        "Alerts per scored record divided by the rate calibration expects: 1 is as calibrated; 10 pages (StreamvaeAlertStorm).",
    ),
    (
        "p99 end-to-end latency",
        "s",
        [target("{{job}}", quantile(0.99, "streamvae_end_to_end_latency_seconds"))],
        "Record timestamp to score produced, 99th percentile per service.",
    ),
    (
        "Dead-letter ratio",
        "percentunit",
        [
            target(
                "{{job}}",
                f"sum by (job) {rate('streamvae_records_dead_lettered_total')} / sum by (job) {rate('streamvae_records_consumed_total')}",
            )
        ],
        "Share of consumed records sent to the dead-letter topic.",
    ),
]

# --- time series, per service ------------------------------------------------------------
# (row, title, unit, [(legend, expr), ...], width)
SERIES: list[tuple[str, str, str, list[tuple[str, str]], int]] = [
    ("Traffic and alerts", "Records scored per service (records/s)", "ops", [
        ("{{job}} scored", f"sum by (job) {rate('streamvae_records_scored_total')}"),
        ("{{job}} consumed", f"sum by (job) {rate('streamvae_records_consumed_total')}"),
        ("{{job}} unscored (KPI)", f"sum by (job) {rate('streamvae_records_unscored_total')}"),
    ], 12),
    ("Traffic and alerts", "Alert ratio vs calibrated, per service", "percentunit", [
        ("{{job}} alerts / scored", f"sum by (job) {rate('streamvae_alerts_total')} / sum by (job) {rate('streamvae_records_scored_total')}"),
        ("{{job}} live window", f"max by (job) {sel('streamvae_live_alert_ratio')}"),
        ("{{job}} calibrated", f"max by (job) {sel('streamvae_expected_alert_ratio')}"),
    ], 12),
    ("Traffic and alerts", "Alerts by service and severity (alerts/s)", "ops", [
        ("{{job}} {{severity}}", f"sum by (job, severity) {rate('streamvae_alerts_total')}"),
        ("{{job}} suppressed ({{reason}})", f"sum by (job, reason) {rate('streamvae_alerts_suppressed_total')}"),
    ], 8),
    ("Traffic and alerts", "Dead letters by service and reason (records/s)", "ops", [
        ("{{job}} {{reason}}", f"sum by (job, reason) {rate('streamvae_records_dead_lettered_total')}"),
    ], 8),
    ("Traffic and alerts", "Consumer lag by partition (records)", "short", [
        ("{{job}} {{topic}}/{{partition}}", f"sum by (job, topic, partition) {sel('streamvae_consumer_lag_records')}"),
    ], 8),
    ("Scores and model", "Score / threshold per service (1 = threshold)", "none", [
        ("{{job}} p50", quantile(0.5, "streamvae_score_threshold_ratio")),
        ("{{job}} p99", quantile(0.99, "streamvae_score_threshold_ratio")),
        ("{{job}} p99.9", quantile(0.999, "streamvae_score_threshold_ratio")),
    ], 8),
    ("Scores and model", "Threshold in force per replica", "none", [
        ("{{job}} {{instance}}", f"max by (job, instance) {sel('streamvae_threshold')}"),
    ], 8),
    ("Scores and model", "Score drift vs calibration", "none", [
        ("{{job}} PSI", f"max by (job) {sel('streamvae_drift_psi')}"),
        ("{{job}} KS", f"max by (job) {sel('streamvae_drift_ks_statistic')}"),
    ], 8),
    ("Scores and model", "Model swaps (1 h) and shadow alert rate", "short", [
        ("{{job}} {{result}}", f"sum by (job, result) (increase(streamvae_model_reloads_total{{{SCOPE}}}[1h]) and on (job, instance) {MODEL_INFO})"),
        ("{{job}} shadow alerts / shadow scored", f"sum by (job) {rate('streamvae_shadow_alerts_total')} / sum by (job) {rate('streamvae_shadow_records_scored_total')}"),
    ], 12),
    ("Scores and model", "KPI window state per service", "short", [
        ("{{job}} live series", f"sum by (job) {sel('streamvae_kpi_series_live')}"),
        ("{{job}} state bytes", f"sum by (job) {sel('streamvae_kpi_state_bytes')}"),
    ], 12),
    ("Latency", "End-to-end latency per service (record ts to scored)", "s", [
        ("{{job}} p50", quantile(0.5, "streamvae_end_to_end_latency_seconds")),
        ("{{job}} p99", quantile(0.99, "streamvae_end_to_end_latency_seconds")),
    ], 8),
    ("Latency", "Scoring time per batch and batch size", "s", [
        ("{{job}} p99", quantile(0.99, "streamvae_scoring_duration_seconds")),
        ("{{job}} mean batch (records)", f"sum by (job) {rate('streamvae_batch_size_records_sum')} / sum by (job) {rate('streamvae_batch_size_records_count')}"),
    ], 8),
    ("Latency", "End-to-end p99 per replica", "s", [
        ("{{job}} {{instance}}", quantile(0.99, "streamvae_end_to_end_latency_seconds", "job, instance")),
    ], 8),
    ("Process", "Errors and loop up", "short", [
        ("{{job}} {{kind}} errors/s", f"sum by (job, kind) {rate('streamvae_errors_total')}"),
        ("{{job}} replicas up", f"sum by (job) {sel('streamvae_up')}"),
    ], 8),
    ("Process", "Resident memory per replica", "bytes", [
        ("{{job}} {{instance}}", f"max by (job, instance) {sel('process_resident_memory_bytes')}"),
    ], 8),
    ("Process", "CPU (cores) and open file descriptors per replica", "short", [
        ("{{job}} {{instance}} CPU", f"sum by (job, instance) {rate('process_cpu_seconds_total')}"),
        ("{{job}} {{instance}} open fds", f"max by (job, instance) {sel('process_open_fds')}"),
    ], 8),
]  # fmt: skip

# --- the table of running replicas ---------------------------------------------------------
SERVICES_TABLE = [
    target("", f"max by (job, instance, name, version, alias, score_kind, topic) ({MODEL_INFO})", instant=True, table=True),
    target("", f"max by (job, instance) {sel('streamvae_threshold')}", instant=True, table=True),
    target("", f"time() - max by (job, instance) {sel('process_start_time_seconds')}", instant=True, table=True),
]  # fmt: skip


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    """A multi-select query variable with "All" (regex ``.*``, so new services show up)."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"var-{name}"},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }


VARIABLES = [
    {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
    variable("job", "Service", "label_values(streamvae_up, job)"),
    variable("instance", "Replica", 'label_values(streamvae_up{job=~"$job"}, instance)'),
    variable("model", "Model", 'label_values(streamvae_model_info{job=~"$job", instance=~"$instance"}, name)'),
    variable("topic", "Input topic", 'label_values(streamvae_model_info{job=~"$job", instance=~"$instance", name=~"$model"}, topic)'),
]  # fmt: skip


def _targets(targets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"refId": chr(ord("A") + i), **t} for i, t in enumerate(targets)]


def stat_panel(
    pid: int, title: str, unit: str, targets: list[dict[str, Any]], description: str, x: int, y: int
) -> dict[str, Any]:
    """A stat of the top row (a value per service where the query keeps ``job``)."""
    return {
        "id": pid,
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 4, "w": 4, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, "noValue": "0"}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "value_and_name",
        },
        "targets": _targets(targets),
    }


def series_panel(
    pid: int, title: str, unit: str, targets: list[tuple[str, str]], width: int, x: int, y: int
) -> dict[str, Any]:
    """A time-series panel with a query per (legend, expr)."""
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["lastNotNull", "max"],
            }
        },
        "targets": _targets([target(legend, expr) for legend, expr in targets]),
    }


def table_panel(pid: int, y: int) -> dict[str, Any]:
    """The running replicas: model information, threshold and uptime merged by replica."""
    return {
        "id": pid,
        "type": "table",
        "title": "Running replicas: model, version, alias, threshold, uptime",
        "datasource": DATASOURCE,
        "gridPos": {"h": 6, "w": 24, "x": 0, "y": y},
        "targets": _targets(SERVICES_TABLE),
        "transformations": [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "renameByName": {
                        "job": "service",
                        "instance": "replica",
                        "name": "model",
                        "score_kind": "score",
                        "Value #A": "",
                        "Value #B": "threshold",
                        "Value #C": "uptime",
                    },
                    "indexByName": {
                        "job": 0,
                        "instance": 1,
                        "name": 2,
                        "version": 3,
                        "alias": 4,
                        "topic": 5,
                        "score_kind": 6,
                        "Value #B": 7,
                        "Value #C": 8,
                    },
                },
            },
        ],
        "fieldConfig": {
            "defaults": {},
            "overrides": [
                {
                    "matcher": {"id": "byName", "options": "uptime"},
                    "properties": [{"id": "unit", "value": "s"}],
                },
                {
                    "matcher": {"id": "byName", "options": "Value #A"},
                    "properties": [{"id": "custom.hidden", "value": True}],
                },
            ],
        },
    }


def row_panel(pid: int, title: str, y: int) -> dict[str, Any]:
    """A row header."""
    return {
        "id": pid,
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        "panels": [],
    }


def panels() -> list[dict[str, Any]]:
    """Stat row, the replica table, then a row per topic of time series (24 columns wide)."""
    out: list[dict[str, Any]] = []
    y = 0
    out.append(row_panel(len(out) + 1, "Fleet at a glance", y))
    y += 1
    for i, (title, unit, targets, description) in enumerate(STATS):
        out.append(stat_panel(len(out) + 1, title, unit, targets, description, 4 * i, y))
    y += 4
    out.append(table_panel(len(out) + 1, y))
    y += 6
    row, x = "", 0
    for row_title, title, unit, targets, width in SERIES:
        if row_title != row:
            row, x = row_title, 0
            y += 8 if out[-1]["type"] == "timeseries" else 0
            out.append(row_panel(len(out) + 1, row_title, y))
            y += 1
        elif x + width > 24:
            x, y = 0, y + 8
        out.append(series_panel(len(out) + 1, title, unit, targets, width, x, y))
        x += width
    return out


def dashboard() -> dict[str, Any]:
    """The whole dashboard."""
    return {
        "uid": "streamvae",
        "title": "streamvae fleet",
        "description": "Scoring services by service (Prometheus job), replica, model and input topic.",
        "tags": ["streamvae", "anomaly-detection"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 2,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": VARIABLES},
        "annotations": {
            "list": [
                {
                    "name": "model loads",
                    "datasource": DATASOURCE,
                    "enable": True,
                    "iconColor": "blue",
                    "expr": f"sum by (job) (changes(streamvae_model_loads_total{{{SCOPE}}}[{RATE}]) and on (job, instance) {MODEL_INFO}) > 0",
                    "titleFormat": "{{job}} loaded a model (start or swap)",
                }
            ]
        },
        "panels": panels(),
    }


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard's panels (rows have none)."""
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def main() -> None:
    """Write the JSON next to this script."""
    out = Path(__file__).resolve().parent / "dashboards" / "streamvae.json"
    out.write_text(json.dumps(dashboard(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
