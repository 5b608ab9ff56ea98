"""Live model swap against a real MLflow registry and a real broker.

The service follows ``models:/fraud@champion``; moving the alias swaps the model between two
batches with no record lost, every score naming the version that produced it; a version that
fails validation is refused and counted while the old one keeps serving; a ``challenger``
scores in the shadow without emitting alerts.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from streamvae.bundle import ModelBundle, save_bundle
from streamvae.config import TrackingSettings
from streamvae.stream.tools import produce_all
from streamvae.tracking import configure, ensure_experiment, log_bundle, set_alias
from tests.factories import encode, feature_message, make_anomalies, make_bundle, make_normal
from tests.integration.kafka_helpers import Topics, read_json, running_service
from tests.integration.kafka_helpers import serve_settings as base_settings

pytestmark = [pytest.mark.kafka, pytest.mark.mlflow, pytest.mark.timeout(300)]


def register(tracking: TrackingSettings, bundle: ModelBundle, path: Path, alias: str) -> str:
    configure(tracking)
    mlflow.set_experiment(experiment_id=ensure_experiment(tracking))
    with mlflow.start_run():
        _, version = log_bundle(save_bundle(bundle, path), "fraud")
    assert version is not None
    set_alias("fraud", alias, version)
    return version


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", body, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_for(url: str, name: str, value: float, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while metric(url, name) < value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.2)


def batch(tag: str, n: int = 60, odd: int = 5, seed: int = 0) -> list[bytes]:
    rows = [*make_normal(n, seed=seed), *(make_anomalies(odd, seed=seed + 1) * 3)]
    return [encode(feature_message(r, rid=f"{tag}{i}")) for i, r in enumerate(rows)]


def test_the_alias_moves_and_the_service_follows_without_losing_a_record(
    broker, tracking, small_bundle, tmp_path
):
    register(tracking, small_bundle, tmp_path / "v1", "champion")
    register(
        tracking, make_bundle(seed=5, epochs=10, percentile=90.0), tmp_path / "v2", "challenger"
    )
    topics = Topics.unique()
    settings = base_settings(broker, topics, tmp_path, tmp_path / "work").model_copy(
        update={
            "model_uri": "models:/fraud@champion",
            "tracking": tracking,
            "model_poll_interval_s": 0.3,
            "shadow_model_uri": "models:/fraud@challenger",
        }
    )
    reloads = 'streamvae_model_reloads_total{result="%s"}'
    with running_service(settings) as running:
        url = running.service.metrics_url
        first = batch("a", seed=0)
        produce_all(broker, topics.input, first)
        scores = read_json(broker, topics.scores, expected=len(first))

        # promote the challenger: the service swaps to version 2 between two batches
        set_alias("fraud", "champion", "2")
        wait_for(url, reloads % "swapped", 1)
        second = batch("b", seed=10)
        produce_all(broker, topics.input, second)
        scores = read_json(broker, topics.scores, expected=len(first) + len(second))

        # an incompatible version (5 features) is refused; version 2 keeps serving
        register(tracking, make_bundle(d=5, epochs=2), tmp_path / "v3", "champion")
        wait_for(url, reloads % "refused", 1)
        third = batch("c", seed=20)
        produce_all(broker, topics.input, third)
        total = len(first) + len(second) + len(third)
        scores = read_json(broker, topics.scores, expected=total)
        alerts = read_json(broker, topics.alerts, expected=1, timeout_s=5)
        time.sleep(0.5)
        shadow_scored = metric(url, "streamvae_shadow_records_scored_total")
        info = metric(
            url,
            'streamvae_model_info{alias="champion",name="fraud",score_kind="neg_elbo",'
            f'topic="{topics.input}",version="2"}}',
        )
        assert metric(url, reloads % "refused") == 1, "a refused version is not retried"

    version_of = {s["id"]: s["model"]["version"] for s in scores}
    assert len(scores) == total and len(version_of) == total, "every record scored once"
    assert {version_of[f"a{i}"] for i in range(65)} == {"1"}
    assert {version_of[f"b{i}"] for i in range(65)} == {"2"}
    assert {version_of[f"c{i}"] for i in range(65)} == {"2"}, "the refused version never scored"
    assert all(a["model"]["version"] in {"1", "2"} for a in alerts)
    assert info == 1
    # the shadow (challenger, version 2) scored every record of the stream alongside
    assert shadow_scored == total


def test_a_fixed_shadow_model_scores_alongside_without_alerting(broker, bundle_dir, tmp_path):
    from streamvae.bundle import save_bundle as save

    lenient = save(make_bundle(seed=4, epochs=5, percentile=50.0), tmp_path / "shadow")
    topics = Topics.unique()
    settings = base_settings(broker, topics, bundle_dir, tmp_path / "work").model_copy(
        update={"shadow_model_uri": str(lenient)}
    )
    with running_service(settings) as running:
        values = batch("s", n=100, odd=0, seed=30)
        produce_all(broker, topics.input, values)
        read_json(broker, topics.scores, expected=len(values))
        time.sleep(0.5)
        url = running.service.metrics_url
        shadow_scored = metric(url, "streamvae_shadow_records_scored_total")
        shadow_alerts = sum(
            metric(url, f'streamvae_shadow_alerts_total{{severity="{s}"}}')
            for s in ("warning", "critical")
        )
        alerts = metric(url, 'streamvae_alerts_total{severity="warning"}') + metric(
            url, 'streamvae_alerts_total{severity="critical"}'
        )
    assert shadow_scored == 100
    assert shadow_alerts >= 25, "the lenient shadow would alert on about half"
    assert alerts <= 5, "only the champion's alerts are emitted"
