"""KPI points through the real broker: alerts, bad points, and window state across restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import orjson
import pytest

from streamvae.bundle import load_bundle, save_bundle
from streamvae.bundle.window import WindowDetector, score_points
from streamvae.stream.admin import ensure_topics
from streamvae.stream.tools import produce_all
from tests.factories import KPI_INTERVAL_MS, KPI_SERIES, kpi_point, kpi_values, make_kpi_bundle
from tests.integration.kafka_helpers import (
    Topics,
    read_json,
    read_raw,
    running_service,
    serve_cmd,
    serve_settings,
)

START, N, W = 1200, 60, 16


@pytest.fixture(scope="module")
def kpi_bundle_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("kpi") / "bundle"
    save_bundle(make_kpi_bundle(window_len=W), path)
    return path


def points(
    start: int, stop: int, spike: tuple[str, int] | None = None
) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` of every series' points ``start .. stop - 1``, interleaved in time."""
    out = []
    for i in range(start, stop):
        for series in KPI_SERIES:
            value = float(kpi_values(series, START + i, 1)[0])
            if spike == (series, i):
                value += 25.0
            out.append((series.encode(), kpi_point(series, START + i, value)))
    return out


def produce(broker: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    keys = [k for k, _ in items]
    produce_all(broker, topic, [v for _, v in items], key=lambda i: keys[i])


def settings_for(broker, topics, bundle_dir, tmp_path):
    settings = serve_settings(broker, topics, bundle_dir, tmp_path)
    ensure_topics(settings.kafka, (f"{topics.input}-state",), partitions=2)
    return settings


def scored_by_point(scores: list[dict]) -> dict[tuple[str, int], float]:
    return {(s["series"], s["ts"]): s["score"] for s in scores if s["status"] == "scored"}


def test_kpi_points_are_scored_alerted_and_bad_ones_dead_lettered(broker, kpi_bundle_dir, tmp_path):
    topics = Topics.unique()
    settings = settings_for(broker, topics, kpi_bundle_dir, tmp_path)
    items = points(0, N, spike=("cpu.web-1", 40))
    late = (b"mem.db-1", kpi_point("mem.db-1", START + 2, 70.0))
    duplicate = (b"mem.db-1", kpi_point("mem.db-1", START + N - 1, 70.0))
    malformed = (b"mem.db-1", b'{"series": "mem.db-1", "ts": 1}')
    produce(broker, topics.input, [*items, late, duplicate, malformed])
    total = len(items) + 3
    with running_service(settings) as running:
        scores = read_json(broker, topics.scores, expected=len(items))
        alerts = read_json(broker, topics.alerts, expected=1)
        dead = read_raw(broker, topics.dead, expected=3)
        time.sleep(0.5)
    assert len(scores) == len(items)
    statuses = [s["status"] for s in scores]
    assert statuses.count("warming_up") == len(KPI_SERIES) * (W - 1)
    assert statuses.count("scored") == len(KPI_SERIES) * (N - W + 1)
    spike_ts = (START + 40) * KPI_INTERVAL_MS
    first = min(alerts, key=lambda a: a["ts"])
    assert (first["series"], first["ts"]) == ("cpu.web-1", spike_ts)
    assert first["explanation"]["window"]["start_ts"] == spike_ts - (W - 1) * KPI_INTERVAL_MS
    assert {a["series"] for a in alerts} == {"cpu.web-1"}
    reasons = sorted(dict(m.headers)["error"].decode() for m in dead)
    assert reasons == ["duplicate_point", "invalid_record", "out_of_order"]
    stats = running.stats[0] if running.stats else None
    if stats is not None:
        assert stats.consumed == total


def test_scores_after_a_restart_equal_scores_without_one(broker, kpi_bundle_dir, tmp_path):
    straight, restarted = Topics.unique(), Topics.unique()
    items = points(0, N)
    produce(broker, straight.input, items)
    with running_service(settings_for(broker, straight, kpi_bundle_dir, tmp_path / "a")):
        expected = scored_by_point(read_json(broker, straight.scores, expected=len(items)))
    settings = settings_for(broker, restarted, kpi_bundle_dir, tmp_path / "b")
    half = len(items) // 2
    produce(broker, restarted.input, items[:half])
    with running_service(settings, max_messages=half) as first:
        first.thread.join(timeout=60)  # a clean stop: outputs, then state, then offsets
    produce(broker, restarted.input, items[half:])
    with running_service(settings):  # a new consumer: windows come back from the state topic
        got = read_json(broker, restarted.scores, expected=len(items))
        time.sleep(0.5)
    after = scored_by_point(got)
    assert len(got) == len(items), "nothing scored twice, nothing warming up again"
    assert set(after) == set(expected)
    keys = sorted(after)
    np.testing.assert_allclose([after[k] for k in keys], [expected[k] for k in keys], rtol=1e-9)


def test_kill_9_mid_stream_changes_no_score(broker, kpi_bundle_dir, tmp_path):
    topics = Topics.unique()
    settings = settings_for(broker, topics, kpi_bundle_dir, tmp_path)
    n = 1000
    items = points(0, n)
    produce(broker, topics.input, items)
    proc = subprocess.Popen(
        serve_cmd(broker, topics, kpi_bundle_dir, tmp_path, commit_interval_s=0.2),
        stderr=subprocess.DEVNULL,
    )
    first = read_json(broker, topics.scores, expected=len(items) // 10, timeout_s=60)
    assert len(first) >= len(items) // 10
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with running_service(settings):
        # read until the topic stops growing: re-deliveries may push it past the point count
        scores = read_json(broker, topics.scores, expected=10**9, timeout_s=15)
    # the reference: the same points scored in order in-process, no broker, no restart
    detector = WindowDetector(load_bundle(kpi_bundle_dir))
    records = [orjson.loads(v) for _, v in items]
    reference = score_points(
        detector,
        [r["series"] for r in records],
        np.array([r["ts"] for r in records], np.int64),
        np.array([r["value"] for r in records]),
    )
    expected = {
        (r["series"], r["ts"]): (str(st), sc)
        for r, st, sc in zip(records, reference.status, reference.score, strict=True)
    }
    seen: dict[tuple[str, int], list[tuple[str, float | None]]] = {}
    for s in scores:
        status = "ready" if s["status"] == "scored" else s["status"]
        seen.setdefault((s["series"], s["ts"]), []).append((status, s["score"]))
    assert set(seen) == set(expected), "every point was handled at least once"
    for point, outcomes in seen.items():
        status, score = expected[point]
        for got_status, got_score in outcomes:  # re-deliveries included
            assert got_status == status, point
            if status == "ready":
                assert got_score == pytest.approx(score, rel=1e-5, abs=1e-7), point
