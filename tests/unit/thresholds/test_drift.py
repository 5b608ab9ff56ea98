from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from streamvae.thresholds import DriftMonitor, ks_statistic, psi


def test_ks_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=700), np.sort(rng.normal(0.3, size=1100))
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)


def test_psi_is_small_for_the_same_distribution_and_large_after_a_shift():
    rng = np.random.default_rng(1)
    reference = np.sort(rng.normal(size=5000))
    assert psi(rng.normal(size=5000), reference) < 0.02
    assert psi(rng.normal(1.0, size=5000), reference) > 0.25


def test_monitor_waits_for_enough_scores_then_reports():
    rng = np.random.default_rng(2)
    monitor = DriftMonitor(np.sort(rng.normal(size=2000)), 0.01, window=1000, min_count=100)
    monitor.update(rng.normal(size=50), np.zeros(50, bool))
    snap = monitor.snapshot()
    assert snap.count == 50 and math.isnan(snap.ks) and math.isnan(snap.alert_rate)
    monitor.update(rng.normal(size=950), np.r_[np.ones(10, bool), np.zeros(940, bool)])
    snap = monitor.snapshot()
    assert snap.count == 1000
    assert snap.ks < 0.1
    assert snap.alert_rate == pytest.approx(0.01)


def test_monitor_window_forgets_old_scores():
    rng = np.random.default_rng(3)
    monitor = DriftMonitor(np.sort(rng.normal(size=2000)), 0.01, window=500, min_count=100)
    monitor.update(rng.normal(size=500), np.zeros(500, bool))
    assert monitor.snapshot().ks < 0.1
    for _ in range(3):  # batches larger and smaller than the window wrap around
        monitor.update(rng.normal(5.0, size=300), np.ones(300, bool))
    snap = monitor.snapshot()
    assert snap.ks > 0.9
    assert snap.alert_rate == 1.0
    monitor.update(rng.normal(size=2000), np.zeros(2000, bool))
    assert monitor.snapshot().ks < 0.1
