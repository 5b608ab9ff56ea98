# ruff: noqa: E501  (PromQL expressions read best on one line)
"""Writes deploy/grafana/dashboards/streamvae.json: the streamvae service dashboard.

Run `python deploy/grafana/make_dashboard.py` after changing a panel; the JSON is committed and
tests/integration/test_prometheus_live.py runs every panel query against a real Prometheus
scraping a real service. Plain dicts (Grafana's dashboard schema v39), no extra dependency.
"""

from __future__ import annotations

import json
from pathlib import Path

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# (title, unit, [(legend, expr), ...], width)
PANELS: list[tuple[str, str, list[tuple[str, str]], int]] = [
    (
        "Throughput (records/s)",
        "ops",
        [
            ("consumed", "sum(rate(streamvae_records_consumed_total[1m]))"),
            ("scored", "sum(rate(streamvae_records_scored_total[1m]))"),
            ("dead-lettered", "sum(rate(streamvae_records_dead_lettered_total[1m]))"),
            ("unscored (KPI)", "sum(rate(streamvae_records_unscored_total[1m]))"),
        ],
        12,
    ),
    (
        "Alert rate vs calibrated rate",
        "percentunit",
        [
            (
                "alerts / scored",
                "sum(rate(streamvae_alerts_total[1m])) / sum(rate(streamvae_records_scored_total[1m]))",
            ),
            ("live window", "max(streamvae_live_alert_ratio)"),
            ("expected (calibration)", "max(streamvae_expected_alert_ratio)"),
        ],
        12,
    ),
    (
        "Alerts by severity (alerts/s)",
        "ops",
        [
            ("{{severity}}", "sum by (severity) (rate(streamvae_alerts_total[1m]))"),
        ],
        8,
    ),
    (
        "Score / threshold (1 = threshold)",
        "none",
        [
            (
                "p50",
                "histogram_quantile(0.5, sum by (le) (rate(streamvae_score_threshold_ratio_bucket[1m])))",
            ),
            (
                "p99",
                "histogram_quantile(0.99, sum by (le) (rate(streamvae_score_threshold_ratio_bucket[1m])))",
            ),
            (
                "p99.9",
                "histogram_quantile(0.999, sum by (le) (rate(streamvae_score_threshold_ratio_bucket[1m])))",
            ),
        ],
        8,
    ),
    (
        "Threshold in force",
        "none",
        [
            ("{{instance}}", "max by (instance) (streamvae_threshold)"),
        ],
        8,
    ),
    (
        "End-to-end latency (record ts to scored)",
        "s",
        [
            (
                "p50",
                "histogram_quantile(0.5, sum by (le) (rate(streamvae_end_to_end_latency_seconds_bucket[1m])))",
            ),
            (
                "p99",
                "histogram_quantile(0.99, sum by (le) (rate(streamvae_end_to_end_latency_seconds_bucket[1m])))",
            ),
        ],
        8,
    ),
    (
        "Scoring time per batch",
        "s",
        [
            (
                "p99",
                "histogram_quantile(0.99, sum by (le) (rate(streamvae_scoring_duration_seconds_bucket[1m])))",
            ),
            (
                "mean batch size (records)",
                "sum(rate(streamvae_batch_size_records_sum[1m])) / sum(rate(streamvae_batch_size_records_count[1m]))",
            ),
        ],
        8,
    ),
    (
        "Consumer lag (records)",
        "short",
        [
            (
                "{{topic}}/{{partition}}",
                "sum by (topic, partition) (streamvae_consumer_lag_records)",
            ),
        ],
        8,
    ),
    (
        "Dead letters by reason (records/s)",
        "ops",
        [
            ("{{reason}}", "sum by (reason) (rate(streamvae_records_dead_lettered_total[1m]))"),
        ],
        8,
    ),
    (
        "Model version",
        "none",
        [
            (
                "{{name}} v{{version}} @{{alias}} ({{score_kind}})",
                "max by (name, version, alias, score_kind) (streamvae_model_info)",
            ),
        ],
        8,
    ),
    (
        "Model swaps (1 h) and shadow alert rate",
        "short",
        [
            ("{{result}}", "sum by (result) (increase(streamvae_model_reloads_total[1h]))"),
            (
                "shadow alerts / shadow scored",
                "sum(rate(streamvae_shadow_alerts_total[5m])) / sum(rate(streamvae_shadow_records_scored_total[5m]))",
            ),
        ],
        8,
    ),
    (
        "Score drift vs calibration",
        "none",
        [
            ("PSI", "max(streamvae_drift_psi)"),
            ("KS", "max(streamvae_drift_ks_statistic)"),
        ],
        8,
    ),
    (
        "Errors (5 min) and loop up",
        "short",
        [
            ("{{kind}} errors", "sum by (kind) (increase(streamvae_errors_total[5m]))"),
            ("up", "min(streamvae_up)"),
        ],
        8,
    ),
    (
        "KPI window state",
        "short",
        [
            ("live series", "sum(streamvae_kpi_series_live)"),
            ("state bytes", "sum(streamvae_kpi_state_bytes)"),
        ],
        8,
    ),
    (
        "Process: resident memory",
        "bytes",
        [
            ("{{instance}} RSS", "max by (instance) (process_resident_memory_bytes)"),
        ],
        8,
    ),
    (
        "Process: CPU (cores) and open file descriptors",
        "short",
        [
            ("{{instance}} CPU", "sum by (instance) (rate(process_cpu_seconds_total[1m]))"),
            ("{{instance}} open fds", "max by (instance) (process_open_fds)"),
        ],
        8,
    ),
]


def panel(
    index: int, title: str, unit: str, targets: list[tuple[str, str]], width: int, x: int, y: int
) -> dict:
    """One time-series panel with a target per (legend, expr)."""
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (legend, expr) in enumerate(targets)
        ],
    }


def dashboard() -> dict:
    """The whole dashboard, panels laid out left to right in rows of 24 columns."""
    panels, x, y = [], 0, 0
    for i, (title, unit, targets, width) in enumerate(PANELS):
        if x + width > 24:
            x, y = 0, y + 8
        panels.append(panel(i, title, unit, targets, width, x, y))
        x += width
    return {
        "uid": "streamvae",
        "title": "streamvae",
        "tags": ["streamvae", "anomaly-detection"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "model loads",
                    "datasource": DATASOURCE,
                    "enable": True,
                    "iconColor": "blue",
                    "expr": "changes(max by (version) (streamvae_model_info)[5m:]) > 0",
                }
            ]
        },
        "panels": panels,
    }


def main() -> None:
    """Write the JSON next to this script."""
    out = Path(__file__).resolve().parent / "dashboards" / "streamvae.json"
    out.write_text(json.dumps(dashboard(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
