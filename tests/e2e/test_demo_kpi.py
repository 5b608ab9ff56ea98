"""The KPI demo workflow on embedded parts (small settings): every point comes back."""

from __future__ import annotations

import pytest

from streamvae.demos.kpi import KpiDemoSettings, run_kpi_demo, synthetic_series

pytestmark = [pytest.mark.kafka, pytest.mark.mlflow, pytest.mark.slow, pytest.mark.timeout(300)]


def test_synthetic_series_hold_one_labelled_incident_each():
    series = synthetic_series(seed=0)
    assert [len(s.windows) for s in series] == [1, 1, 1]
    for s in series:
        ((start, end),) = s.windows
        inside = (s.ts_ms >= start) & (s.ts_ms <= end)
        assert abs(s.values[inside].mean() - s.values[~inside].mean()) > 0.0


def test_kpi_demo_streams_scores_and_alerts_every_point(tmp_path):
    cfg = KpiDemoSettings(
        work_dir=tmp_path, epochs=15, window_len=16, max_points=2000, model="vae", percentile=99.0
    )
    report = run_kpi_demo(cfg)
    assert report.series == 3
    assert report.points == 3 * 2000
    assert report.scored + report.warming_up == report.points
    # per series: the window fills (W - 1 points), the novelty memory holds its first
    # non-overlapping window (2W - 1), then both tails get likelihood_min values (100)
    assert report.warming_up == 3 * ((16 - 1) + (2 * 16 - 1) + 100)
    assert report.dead_lettered == 1  # the repeated point
    assert report.windows == 3 and report.windows_detected >= 2
    assert report.alerts >= report.alerts_in_windows >= 2
