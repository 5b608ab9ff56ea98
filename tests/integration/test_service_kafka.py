"""The scoring service against the real embedded broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

import numpy as np
import pytest

from streamvae.stream.tools import produce_all
from tests.factories import encode, feature_message, make_anomalies, make_normal
from tests.integration.kafka_helpers import (
    Topics,
    read_json,
    read_raw,
    running_service,
    serve_cmd,
    serve_settings,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(180)]
CLIENTS = pytest.mark.parametrize("client", ["kafka-python", "confluent"])


def _records(n_normal: int, n_odd: int, seed: int = 0) -> tuple[list[bytes], set[str]]:
    normal = [
        encode(feature_message(r, rid=f"n{i}"))
        for i, r in enumerate(make_normal(n_normal, seed=seed))
    ]
    odd = [
        encode(feature_message(r * 3, rid=f"a{i}"))
        for i, r in enumerate(make_anomalies(n_odd, seed=seed + 1))
    ]
    return normal + odd, {f"a{i}" for i in range(n_odd)}


@CLIENTS
def test_anomalies_raise_alerts_and_every_record_is_scored(broker, bundle_dir, tmp_path, client):
    topics = Topics.unique()
    settings = serve_settings(broker, topics, bundle_dir, tmp_path, client=client)
    values, odd_ids = _records(200, 20)
    with running_service(settings) as running:
        produce_all(broker, topics.input, values)
        scores = read_json(broker, topics.scores, expected=len(values))
        alerts = read_json(broker, topics.alerts, expected=len(odd_ids))
        url = running.service.metrics_url
        with urllib.request.urlopen(url, timeout=5) as resp:
            metrics = resp.read().decode()
        with urllib.request.urlopen(url.replace("/metrics", "/healthz"), timeout=5) as resp:
            health = json.loads(resp.read())
    assert {s["id"] for s in scores} == {f"n{i}" for i in range(200)} | odd_ids
    alerted = {a["id"] for a in alerts}
    assert len(alerted & odd_ids) >= 18, "most injected anomalies alert"
    assert len(alerted - odd_ids) <= 6, "few false alarms at the 99th percentile"
    assert all(a["score"] > a["threshold"] for a in alerts)
    assert "streamvae_records_scored_total 220.0" in metrics
    assert health["status"] == "ok"
    assert running.stats[0].scored == 220


BAD = {
    "invalid_json": b"{oops",
    "non_finite": b'{"features": [NaN, 1, 1, 1, 1, 1]}',
    "too_large": b'{"features": [' + b"1.0," * 400_000 + b"1.0]}",
    "invalid_record": b'{"features_missing": true}',
    "schema_mismatch": b'{"features": {"x0": 1.0}}',
    "invalid_encoding": b'{"features": "\xff"}',
}


@CLIENTS
def test_bad_input_is_dead_lettered_with_reasons_and_accounting_holds(
    broker, bundle_dir, tmp_path, client
):
    topics = Topics.unique()
    settings = serve_settings(broker, topics, bundle_dir, tmp_path, client=client)
    good, _ = _records(30, 3)
    mixed = good[:15] + list(BAD.values()) + good[15:]
    with running_service(settings) as running:
        produce_all(broker, topics.input, mixed)
        dead = read_raw(broker, topics.dead, expected=len(BAD))
        read_json(broker, topics.scores, expected=len(good))
        time.sleep(0.3)
        get = running.service.metrics.registry.get_sample_value
        consumed = get("streamvae_records_consumed_total")
        scored = get("streamvae_records_scored_total")
        dead_count = sum(get("streamvae_records_dead_lettered_total", {"reason": r}) for r in BAD)
    reasons = sorted(dict(m.headers)["error"].decode() for m in dead)
    assert reasons == sorted(BAD)
    for message in dead:
        headers = dict(message.headers)
        assert headers["detail"]
        if headers["error"] == b"invalid_json":
            assert message.value == BAD["invalid_json"], "dead letters keep the original bytes"
    assert (consumed, scored, dead_count) == (len(mixed), len(good), len(BAD))
    assert consumed == scored + dead_count


@CLIENTS
def test_restart_resumes_from_committed_offsets_without_loss(broker, bundle_dir, tmp_path, client):
    topics = Topics.unique()
    settings = serve_settings(broker, topics, bundle_dir, tmp_path, client=client)
    values, _ = _records(120, 0)
    produce_all(broker, topics.input, values[:60])
    with running_service(settings, max_messages=60) as first:
        first.thread.join(timeout=60)
    assert first.stats[0].messages == 60
    produce_all(broker, topics.input, values[60:])
    with running_service(settings) as _:
        scores = read_json(broker, topics.scores, expected=120)
        time.sleep(0.5)
    ids = [s["id"] for s in scores]
    assert sorted(set(ids)) == sorted(f"n{i}" for i in range(120))
    assert len(ids) == 120, "a clean stop commits everything: nothing is scored twice"


def _wait_for_scores(bootstrap, topic, n, timeout_s=60):
    scores = read_json(bootstrap, topic, expected=n, timeout_s=timeout_s)
    assert len(scores) >= n, f"only {len(scores)} of {n} scores arrived"
    return scores


def test_sigterm_finishes_flushes_commits_and_exits_zero(broker, bundle_dir, tmp_path):
    topics = Topics.unique()
    serve_settings(broker, topics, bundle_dir, tmp_path)  # creates the topics
    values, _ = _records(100, 0)
    produce_all(broker, topics.input, values)
    proc = subprocess.Popen(
        serve_cmd(broker, topics, bundle_dir, tmp_path), stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_scores(broker, topics.scores, 100)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "100 scored" in err
    # a second instance in the same group finds nothing left to do: offsets were committed
    with running_service(serve_settings(broker, topics, bundle_dir, tmp_path)) as running:
        time.sleep(1.5)
    assert running.stats[0].messages == 0


def test_kill_9_loses_nothing(broker, bundle_dir, tmp_path):
    topics = Topics.unique()
    serve_settings(broker, topics, bundle_dir, tmp_path)
    values, _ = _records(3000, 0, seed=3)
    produce_all(broker, topics.input, values)
    proc = subprocess.Popen(
        serve_cmd(broker, topics, bundle_dir, tmp_path), stderr=subprocess.DEVNULL
    )
    _wait_for_scores(broker, topics.scores, 500)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with running_service(serve_settings(broker, topics, bundle_dir, tmp_path)) as _:
        # read until the topic stops growing: duplicates may push it past 3000
        scores = read_json(broker, topics.scores, expected=10**9, timeout_s=15)
    ids = [s["id"] for s in scores]
    assert set(ids) == {f"n{i}" for i in range(3000)}, "every record was scored at least once"
    by_alert_id = {s["alert_id"]: s["score"] for s in scores}
    assert len(by_alert_id) == 3000, "duplicates are re-deliveries with the same alert_id"
    rescored = [s for s in scores if by_alert_id[s["alert_id"]] != s["score"]]
    assert not rescored, "a re-delivered record gets the same score"
    assert np.isfinite(list(by_alert_id.values())).all()


def _metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_segments_are_served_and_drift_gauges_move(broker, small_bundle, tmp_path):
    from dataclasses import replace

    from streamvae.bundle import TabularDetector, save_bundle
    from streamvae.thresholds import CalibrationSpec, calibrate_set

    det = TabularDetector(small_bundle)
    normal = det.select(det.score(make_normal(1000, seed=50)))
    spec = CalibrationSpec(target_fpr=0.01, segment_field="merchant", min_segment_size=300)
    segments = ["grocery"] * 500 + ["travel"] * 500
    thresholds, _ = calibrate_set(normal, spec, score_kind="neg_elbo", segments=segments)
    model_dir = save_bundle(replace(small_bundle, threshold=thresholds), tmp_path / "seg-model")
    topics = Topics.unique()
    settings = serve_settings(broker, topics, model_dir, tmp_path).model_copy(
        update={"drift_window": 300, "drift_min_count": 100}
    )
    calm = [
        encode(feature_message(r, rid=f"c{i}") | {"merchant": ("grocery", "travel")[i % 2]})
        for i, r in enumerate(make_normal(300, seed=51))
    ]
    shifted = [
        encode(feature_message(r * 3, rid=f"s{i}") | {"merchant": "grocery"})
        for i, r in enumerate(make_anomalies(300, seed=52))
    ]
    with running_service(settings) as running:
        url = running.service.metrics_url
        produce_all(broker, topics.input, calm)
        scores = read_json(broker, topics.scores, expected=300)
        time.sleep(1.2)  # drift gauges are recomputed at most once a second
        produce_all(broker, topics.input, calm[:10])
        read_json(broker, topics.scores, expected=310)
        ks_calm = _metric(url, "streamvae_drift_ks_statistic")
        rate_calm = _metric(url, "streamvae_live_alert_ratio")
        produce_all(broker, topics.input, shifted)
        read_json(broker, topics.scores, expected=610)
        time.sleep(1.2)
        produce_all(broker, topics.input, shifted[:10])
        read_json(broker, topics.scores, expected=620)
        ks_shifted = _metric(url, "streamvae_drift_ks_statistic")
        psi_shifted = _metric(url, "streamvae_drift_psi")
        rate_shifted = _metric(url, "streamvae_live_alert_ratio")
        expected = _metric(url, "streamvae_expected_alert_ratio")
    by_segment = {s["segment"]: s["threshold"] for s in scores}
    assert by_segment["grocery"] == thresholds.segments["grocery"].value
    assert by_segment["travel"] == thresholds.segments["travel"].value
    assert all(s["p_value"] is not None for s in scores)
    assert ks_calm < 0.25 and rate_calm < 0.05
    assert ks_shifted > 0.8 and psi_shifted > 1.0 and rate_shifted > 0.8
    assert expected == pytest.approx(0.01)
