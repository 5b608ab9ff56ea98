"""Crash and rebalance test: >= 20 seeded kill -9s of `streamvae serve` consumers mid-stream,
with graceful leaves and joins, against the real broker. Nothing may be lost, duplicates must
be re-deliveries (same alert_id, same verdict), and the alerts after de-duplication must equal
an undisturbed scoring of the same records.

CI runs a bounded version; ``STREAMVAE_CHAOS_KILLS`` / ``STREAMVAE_CHAOS_RECORDS`` /
``STREAMVAE_CHAOS_SEED`` make it longer (the notes report such a run).
"""

from __future__ import annotations

import os

import pytest

from tests.integration.chaos import run_chaos

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

KILLS = int(os.environ.get("STREAMVAE_CHAOS_KILLS", "20"))
RECORDS = int(os.environ.get("STREAMVAE_CHAOS_RECORDS", "8000"))
SEED = int(os.environ.get("STREAMVAE_CHAOS_SEED", "1"))


def test_kill_9_storm_loses_nothing_and_alerts_equal_an_undisturbed_run(
    broker, bundle_dir, tmp_path
):
    report = run_chaos(broker, bundle_dir, tmp_path, records=RECORDS, kills=KILLS, seed=SEED)
    print(f"\nchaos: {report.line()}")
    assert report.kills == KILLS and report.kills_mid_stream >= 0.9 * KILLS, "kills mid-stream"
    assert report.lost == 0, "every record scored or dead-lettered"
    assert report.inconsistent_redeliveries == 0, "a re-delivery repeats the same verdict"
    assert report.alert_mismatches == [], report.alert_mismatches[:5]
    assert report.alerts_after_dedup == report.expected_alerts > 0
