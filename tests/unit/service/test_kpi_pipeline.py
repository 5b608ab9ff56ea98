"""The KPI pipeline with in-memory fakes: windows per series, bad points, alerts, state."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from streamvae.bundle.window import WindowDetector
from streamvae.metrics import ServiceMetrics
from streamvae.service import PipelineConfig, ScoringPipeline
from streamvae.service.kpi import KpiState, kpi_pipeline
from streamvae.service.runner import RunnerConfig, ServiceRunner
from streamvae.types import InboundMessage, ModelRef
from tests.factories import (
    KPI_INTERVAL_MS,
    FakeSource,
    ListSink,
    kpi_point,
    kpi_values,
    make_kpi_bundle,
)

START = 1200  # the synthetic time axis continues after the training history
W = 16


@pytest.fixture(scope="module")
def bundle():
    return make_kpi_bundle(window_len=W)


STATE_FIELDS = {"state_topic", "state_partitions", "max_series", "series_ttl_s"}


def pipeline(bundle, **extra) -> ScoringPipeline:
    values = {"alert_topic": "alerts", "dead_letter_topic": "dlq", "state_topic": "state"}
    values |= extra
    state = KpiState(**{k: v for k, v in values.items() if k in STATE_FIELDS})
    config = PipelineConfig(**{k: v for k, v in values.items() if k not in STATE_FIELDS})
    return kpi_pipeline(WindowDetector(bundle), ModelRef("kpi", "1"), config, state)


def stream(series: str, n: int, *, spike_at: int | None = None) -> list[bytes]:
    values = kpi_values(series, START, n)
    if spike_at is not None:
        values[spike_at] += 25.0
    return [kpi_point(series, START + i, v) for i, v in enumerate(values)]


def on_topic(outcome, topic: str) -> list[dict]:
    """The decoded records an outcome sends to ``topic``."""
    return [orjson.loads(m.value) for m in outcome.outbound if m.topic == topic]


def messages(values: list[bytes], *, start: int = 0, partition: int = 0) -> list[InboundMessage]:
    return [
        InboundMessage("kpi", partition, start + i, v, None, 1_000) for i, v in enumerate(values)
    ]


def test_warm_up_then_scores_and_an_alert_explains_the_window(bundle):
    pipe = pipeline(bundle, score_topic="scores")
    outcome = pipe.handle(messages(stream("cpu.web-1", 60, spike_at=40)), now_ms=0)
    assert outcome.unscored["warming_up"] == W - 1
    assert outcome.records_scored == 60 - (W - 1)
    scores = on_topic(outcome, "scores")
    assert [s["status"] for s in scores[: W - 1]] == ["warming_up"] * (W - 1)
    assert all(s["score"] is None and s["severity"] is None for s in scores[: W - 1])
    alerts = on_topic(outcome, "alerts")
    spike_ts = (START + 40) * KPI_INTERVAL_MS
    # the spike alerts at once; its distortion of the next window may alert once more
    assert alerts and alerts[0]["ts"] == spike_ts
    assert all(spike_ts <= a["ts"] <= spike_ts + 2 * KPI_INTERVAL_MS for a in alerts)
    alert = alerts[0]
    window = alert["explanation"]["window"]
    assert window["end_ts"] == alert["ts"]
    assert window["start_ts"] == alert["ts"] - (W - 1) * KPI_INTERVAL_MS
    assert alert["explanation"]["observed"] - alert["explanation"]["expected"] > 15.0
    assert alert["series"] == "cpu.web-1" and alert["segment"] == "cpu.web-1"


def test_bad_points_are_dead_lettered_with_a_reason_and_everything_is_accounted_for(bundle):
    pipe = pipeline(bundle)
    good = stream("mem.db-1", 20)
    late = kpi_point("mem.db-1", START + 3, 70.0)
    duplicate = kpi_point("mem.db-1", START + 19, 71.0)
    bad = [
        b"{not json",
        orjson.dumps({"series": "mem.db-1", "ts": "yesterday", "value": 1.0}),
        orjson.dumps({"series": "mem.db-1", "ts": 5, "value": "high"}),
        orjson.dumps({"ts": 5, "value": 1.0}),  # no series and no key
        orjson.dumps({"series": "mem.db-1", "ts": 5, "value": 1e39}),
    ]
    outcome = pipe.handle(messages([*good, late, duplicate, *bad]), now_ms=0)
    assert dict(outcome.dead_letters) == {
        "out_of_order": 1,
        "duplicate_point": 1,
        "invalid_json": 1,
        "invalid_record": 3,
        "non_finite": 1,
    }
    dead = [m for m in outcome.outbound if m.topic == "dlq"]
    assert dict(dead[0].headers)["error"] == b"out_of_order"
    accounted = (
        outcome.records_scored + sum(outcome.dead_letters.values()) + sum(outcome.unscored.values())
    )
    assert accounted == outcome.records_consumed == len(good) + 2 + len(bad)


def test_the_message_key_names_the_series_when_the_record_does_not(bundle):
    pipe = pipeline(bundle)
    value = orjson.dumps({"ts": START * KPI_INTERVAL_MS, "value": 50.0})
    outcome = pipe.handle([InboundMessage("kpi", 0, 0, value, b"cpu.web-2", 1)], now_ms=0)
    assert outcome.unscored["warming_up"] == 1 and "cpu.web-2" in pipe.input.store


def test_state_snapshots_restore_and_skip_what_was_already_absorbed(bundle):
    values = stream("cpu.web-2", 80)
    straight = pipeline(bundle, score_topic="scores")
    expected = on_topic(straight.handle(messages(values), now_ms=0), "scores")
    first = pipeline(bundle, score_topic="scores")
    first.handle(messages(values[:50]), now_ms=0)
    state = first.checkpoint_messages()
    assert [m.key for m in state] == [b"cpu.web-2"]
    assert state[0].topic == "state" and state[0].partition == 0
    assert first.checkpoint_messages() == []  # nothing changed since
    resumed = pipeline(bundle, score_topic="scores")
    assert resumed.input.restore([(m.key, m.value) for m in state], [("kpi", 0)]) == 1
    # the consumer restarts from an older committed offset: 45..49 are replayed
    outcome = resumed.handle(messages(values[45:], start=45), now_ms=0)
    assert outcome.unscored == {"replayed": 5}
    got = on_topic(outcome, "scores")
    assert [g["ts"] for g in got] == [e["ts"] for e in expected[50:]]
    np.testing.assert_allclose([g["score"] for g in got], [e["score"] for e in expected[50:]])


def test_restore_ignores_other_partitions_and_forget_drops_series(bundle):
    first = pipeline(bundle)
    first.handle(messages(stream("cpu.web-1", 20), partition=1), now_ms=0)
    state = [(m.key, m.value) for m in first.checkpoint_messages()]
    other = pipeline(bundle)
    assert other.input.restore(state, [("kpi", 0)]) == 0
    assert other.input.restore(state, [("kpi", 1)]) == 1
    other.input.forget([("kpi", 1)])
    assert len(other.input.store) == 0


def test_a_restored_series_is_not_evicted_as_idle_before_its_next_point(bundle):
    first = pipeline(bundle, series_ttl_s=60.0)
    first.handle(messages(stream("cpu.web-1", 20)), now_ms=1_000_000_000)
    state = [(m.key, m.value) for m in first.checkpoint_messages()]
    resumed = pipeline(bundle, series_ttl_s=60.0)
    now = 2_000_000_000
    assert resumed.input.restore(state, [("kpi", 0)], now_ms=now) == 1
    resumed.handle(messages(stream("mem.db-1", 1), start=20), now_ms=now + 1_000)
    assert "cpu.web-1" in resumed.input.store  # restored a second ago: not idle


def test_a_malformed_snapshot_is_skipped(bundle):
    pipe = pipeline(bundle)
    bad = [
        (b"a", b"{not json"),
        (b"a", orjson.dumps({"series": "a", "topic": "kpi", "partition": 0})),
    ]
    assert pipe.input.restore(bad, [("kpi", 0)]) == 0


def test_idle_series_are_evicted_and_memory_is_reported(bundle):
    pipe = pipeline(bundle, series_ttl_s=60.0)
    outcome = pipe.handle(messages(stream("cpu.web-1", 5)), now_ms=0)
    assert outcome.series_live == 1 and outcome.state_bytes and outcome.state_bytes > 0
    later = pipe.handle(messages(stream("mem.db-1", 1), start=5), now_ms=120_000)
    assert later.series_live == 1 and "cpu.web-1" not in pipe.input.store


def test_runner_writes_state_after_the_outputs_and_before_the_commit(bundle):
    source = FakeSource(messages(stream("cpu.web-1", 30)), batch=10)
    sink = ListSink()
    runner = ServiceRunner(
        source, sink, pipeline(bundle), ServiceMetrics(), RunnerConfig(commit_interval_s=0.0)
    )
    stats = runner.run(max_messages=30, idle_timeout_s=0.5)
    assert stats.unscored == {"warming_up": W - 1}
    state = sink.on("state")
    assert state and source.committed == {("kpi", 0): 30}
    last = orjson.loads(state[-1].value)
    assert last["offset"] == 29 and last["filled"] == W


def test_a_model_swap_keeps_the_live_windows(bundle):
    pipe = pipeline(bundle, score_topic="scores")
    points = stream("cpu.web-1", 40)
    first = pipe.handle(messages(points[:30]), now_ms=0)
    assert first.unscored["warming_up"] == W - 1
    pipe.install(
        WindowDetector(make_kpi_bundle(window_len=W, epochs=5, seed=2)), ModelRef("kpi", "2")
    )
    second = pipe.handle(messages(points[30:], start=30), now_ms=0)
    assert second.records_scored == 10 and not second.unscored, "no warm-up after the swap"
    scores = on_topic(second, "scores")
    assert {s["model"]["version"] for s in scores} == {"2"}
    with pytest.raises(ValueError, match="window spec"):
        pipe.install(WindowDetector(make_kpi_bundle(window_len=8, epochs=2)), ModelRef("kpi", "3"))


def test_m_of_n_confirmation_holds_a_lone_spike_and_survives_a_restore(bundle):
    from streamvae.thresholds import HygienePolicy

    hygiene = HygienePolicy(confirm_m=2, confirm_n=3)
    points = stream("cpu.web-1", 60, spike_at=40)
    plain = pipeline(bundle).handle(messages(points), now_ms=0)
    gated = pipeline(bundle, hygiene=hygiene, score_topic="scores")
    outcome = gated.handle(messages(points), now_ms=0)
    assert sum(plain.alerts.values()) >= 1
    assert sum(outcome.alerts.values()) + sum(outcome.suppressed.values()) == sum(
        plain.alerts.values()
    ), "every flagged point is either alerted or counted as suppressed"
    assert outcome.suppressed["unconfirmed"] >= 1, "the spike's first flag waits for a second"
    # the gate's state travels with the window snapshot
    snapshots = gated.checkpoint_messages()
    state = orjson.loads(snapshots[0].value)
    assert state["gate"]["flags"] >= 0
    restored = pipeline(bundle, hygiene=hygiene)
    restored.input.restore([(m.key, m.value) for m in snapshots], [("kpi", 0)])
    assert restored.gate.snapshot("cpu.web-1") == gated.gate.snapshot("cpu.web-1")


def test_bookkeeping_is_bounded_and_evicted_series_get_tombstones(bundle):
    """50,000 ids with max_series 1,000 held 50,000 ``_applied`` entries, and evicted series
    never got a tombstone, so a restore read every series ever seen."""
    pipe = pipeline(bundle, max_series=1_000)
    total = 0
    for chunk in range(5):
        values = [kpi_point(f"s{chunk}-{i}", START, 1.0) for i in range(10_000)]
        pipe.handle(messages(values, start=total), now_ms=0)
        total += len(values)
        assert len(pipe.input.store) <= 1_000
        assert len(pipe.input._applied) <= 1_000
        assert len(pipe.input._dirty) <= 1_000
    state = pipe.checkpoint_messages()
    tombstones = [m for m in state if m.value is None]
    snapshots = [m for m in state if m.value is not None]
    assert len(snapshots) == 1_000
    assert len(tombstones) == 49_000  # every evicted series, once
    assert {m.key for m in tombstones}.isdisjoint({m.key for m in snapshots})
    assert all(m.topic == "state" and m.partition == 0 for m in tombstones)
    assert pipe.checkpoint_messages() == []


def test_a_restore_applies_tombstones(bundle):
    first = pipeline(bundle, series_ttl_s=60.0)
    first.handle(messages(stream("cpu.web-1", 20)), now_ms=0)
    first.handle(messages(stream("mem.db-1", 20), start=20), now_ms=0)
    log = [(m.key, m.value) for m in first.checkpoint_messages()]
    # cpu.web-1 falls silent past the TTL: evicted, then tombstoned at the checkpoint
    first.handle(messages([kpi_point("mem.db-1", START + 20, 70.0)], start=40), now_ms=120_000)
    later = first.checkpoint_messages()
    assert (b"cpu.web-1", None) in [(m.key, m.value) for m in later]
    log += [(m.key, m.value) for m in later]
    resumed = pipeline(bundle)
    assert resumed.input.restore(log, [("kpi", 0)]) == 1
    assert resumed.input.store.names() == ["mem.db-1"]


def test_a_series_back_after_its_eviction_gets_no_tombstone(bundle):
    pipe = pipeline(bundle, max_series=1)
    pipe.handle(messages([kpi_point("a", START, 1.0), kpi_point("b", START, 1.0)]), now_ms=0)
    pipe.handle(messages([kpi_point("a", START + 1, 1.0)], start=2), now_ms=0)
    state = pipe.checkpoint_messages()
    assert [(m.key, m.value is None) for m in state] == [(b"b", True), (b"a", False)]


def test_a_model_failing_on_every_window_stops_the_service_without_committing(bundle, monkeypatch):
    """The points of a failed KPI batch are already in their windows, so the retry counts
    them as replayed instead of failing again; batch after batch of that must still stop."""
    from prometheus_client import CollectorRegistry

    from streamvae.errors import ProcessingHaltedError

    pipe = pipeline(bundle)

    def broken(*args, **kwargs):
        raise RuntimeError("broken model")

    monkeypatch.setattr(pipe.detector, "score", broken)
    source = FakeSource(messages(stream("cpu.web-1", 200)), batch=20)
    runner = ServiceRunner(
        source, ListSink(), pipe, ServiceMetrics(CollectorRegistry()),
        RunnerConfig(poll_timeout_ms=1, max_consecutive_failures=5), lambda: 0,
    )  # fmt: skip
    with pytest.raises(ProcessingHaltedError, match="5 batches in a row"):
        runner.run()
    assert source.commits == 0


@pytest.fixture(scope="module")
def stream_bundle():
    return make_kpi_bundle(window_len=W, score_kind="stream")


def test_the_stream_score_warms_up_per_series_then_alerts_once_on_a_spike(stream_bundle):
    settings = stream_bundle.preprocess.stream
    assert stream_bundle.score_kind == "stream" and settings is not None
    pipe = pipeline(stream_bundle, score_topic="scores")
    n, spike = 400, 350
    outcome = pipe.handle(messages(stream("cpu.web-1", n, spike_at=spike)), now_ms=0)
    scores = on_topic(outcome, "scores")
    warming = [s for s in scores if s["status"] == "warming_up"]
    # window warm-up, then the series' own history for the novelty and the two tails
    assert len(warming) == outcome.unscored["warming_up"] > W - 1 + settings.likelihood_min
    assert all(s["score"] is None for s in warming)
    scored = [s for s in scores if s["status"] == "scored"]
    assert len(scored) == outcome.records_scored == n - len(warming)
    assert all(0.0 <= s["score"] <= 1.0 for s in scored)
    assert {"fused", "model", "novelty", "residual"} <= set(scored[0]["components"])
    alerts = on_topic(outcome, "alerts")
    spike_ts = (START + spike) * KPI_INTERVAL_MS
    # the spike alerts once (the next points are suppressed); the 99th-percentile threshold
    # lets the odd normal point through, as calibrated (at most 1 % of the scored points)
    on_spike = [a for a in alerts if a["ts"] >= spike_ts]
    assert [a["ts"] for a in on_spike] == [spike_ts]
    assert len(alerts) - 1 <= 0.01 * len(scored) + 1
    assert on_spike[0]["score"] == max(s["score"] for s in scored) > 0.5
    assert on_spike[0]["explanation"]["observed"] - on_spike[0]["explanation"]["expected"] > 15.0
    assert outcome.state_bytes > 8 * settings.novelty_memory  # the stream state is counted


def test_the_stream_state_survives_a_restart_exactly(stream_bundle):
    values = stream("cpu.web-2", 400)
    values[300] = kpi_point("cpu.web-2", START + 300, 90.0)
    straight = pipeline(stream_bundle, score_topic="scores")
    expected = on_topic(straight.handle(messages(values), now_ms=0), "scores")
    first = pipeline(stream_bundle, score_topic="scores")
    first.handle(messages(values[:250]), now_ms=0)
    state = first.checkpoint_messages()
    assert "scoring" in orjson.loads(state[0].value)
    assert len(state[0].value) < 100_000
    resumed = pipeline(stream_bundle, score_topic="scores")
    assert resumed.input.restore([(m.key, m.value) for m in state], [("kpi", 0)]) == 1
    outcome = resumed.handle(messages(values[240:], start=240), now_ms=0)
    got = on_topic(outcome, "scores")
    assert [g["ts"] for g in got] == [e["ts"] for e in expected[250:]]
    assert [g["score"] for g in got] == [e["score"] for e in expected[250:]]
    assert max(g["score"] for g in got) > 0.3  # the jump at 300 scored after the restart
    # without the stream state the series would warm up again
    fresh = pipeline(stream_bundle, score_topic="scores")
    broken = [(m.key, orjson.dumps(orjson.loads(m.value) | {"scoring": {}})) for m in state]
    assert fresh.input.restore(broken, [("kpi", 0)]) == 0
