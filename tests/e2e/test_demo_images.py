"""The image demo workflow on embedded parts (small settings): every image comes back."""

from __future__ import annotations

import pytest

from streamvae.demos.images import ImageDemoSettings, run_image_demo

pytestmark = [pytest.mark.kafka, pytest.mark.mlflow, pytest.mark.slow, pytest.mark.timeout(300)]


def test_image_demo_scores_every_image_and_localises_the_corrupted_ones(tmp_path):
    cfg = ImageDemoSettings(work_dir=tmp_path, streamed=128)
    report = run_image_demo(cfg)
    assert report.images == report.scored == 128
    assert report.anomalies == 32
    assert report.dead_lettered == 2  # the NaN image alone, the malformed batch whole
    assert report.auroc >= 0.75, "corrupted digits score higher"
    assert report.true_alerts >= 3 and report.alerts - report.true_alerts <= 4
    assert report.boxes_on_target >= 0.5 * report.true_alerts
