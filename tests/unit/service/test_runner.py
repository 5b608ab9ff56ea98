from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from streamvae.bundle import TabularDetector
from streamvae.metrics import ServiceMetrics
from streamvae.service import PipelineConfig, RunnerConfig, ServiceRunner
from streamvae.service.features import feature_pipeline
from streamvae.types import ModelRef
from tests.factories import (
    FakeSource,
    ListSink,
    encode,
    feature_message,
    inbound,
    make_anomalies,
    make_normal,
)


def _runner(bundle, messages, sink=None, batch=4, **config):
    source = FakeSource(messages, batch=batch)
    sink = sink or ListSink()
    pipeline = feature_pipeline(
        TabularDetector(bundle),
        ModelRef("m", "1"),
        PipelineConfig(alert_topic="alerts", dead_letter_topic="dlq"),
    )
    metrics = ServiceMetrics(CollectorRegistry())
    runner = ServiceRunner(
        source, sink, pipeline, metrics, RunnerConfig(poll_timeout_ms=1, **config), lambda: 10_000
    )
    return runner, source, sink, metrics


def _stream():
    good = [encode(feature_message(r, ts=9_000)) for r in make_normal(8, seed=5)]
    odd = [encode(feature_message(r * 3, ts=9_500)) for r in make_anomalies(2, seed=6)]
    return inbound(good + odd + [b"{bad"])


def test_runs_to_max_messages_then_commits_everything(small_bundle):
    runner, source, sink, metrics = _runner(small_bundle, _stream())
    stats = runner.run(max_messages=11)
    assert (stats.messages, stats.consumed, stats.scored, stats.dead_lettered) == (11, 11, 10, 1)
    assert stats.alerted >= 2
    assert source.committed == {("in", 0): 11}
    assert len(sink.on("alerts")) == stats.alerted
    assert len(sink.on("dlq")) == 1
    get = metrics.registry.get_sample_value
    assert get("streamvae_records_consumed_total") == 11
    assert get("streamvae_records_scored_total") == 10
    assert get("streamvae_records_dead_lettered_total", {"reason": "invalid_json"}) == 1
    assert get("streamvae_messages_consumed_total") == 11
    assert get("streamvae_end_to_end_latency_seconds_count") == 10
    assert get("streamvae_end_to_end_latency_seconds_sum") == pytest.approx(8 * 1.0 + 2 * 0.5)
    assert get("streamvae_score_threshold_ratio_count") == 10
    assert get("streamvae_up") == 0


def test_max_messages_is_never_exceeded(small_bundle):
    runner, source, _, _ = _runner(small_bundle, _stream(), batch=4)
    assert runner.run(max_messages=6).messages == 6
    assert source.position == 6


def test_failed_flush_commits_nothing_and_propagates(small_bundle):
    sink = ListSink(fail_on_flush=2)
    runner, source, _, metrics = _runner(
        small_bundle, _stream(), sink=sink, batch=4, commit_interval_s=0
    )
    with pytest.raises(ConnectionError):
        runner.run(max_messages=11)
    # the first batch was flushed and committed; the second never was, so it will be re-delivered
    assert source.committed == {("in", 0): 4}
    assert metrics.registry.get_sample_value("streamvae_errors_total", {"kind": "produce"}) == 1


def test_outputs_are_flushed_before_every_commit(small_bundle):
    sink = ListSink()
    runner, source, _, _ = _runner(small_bundle, _stream(), sink=sink, batch=4)
    original = source.commit

    def commit():
        assert sink.flushed == sink.sent, "a commit only ever follows a flush of everything sent"
        original()

    source.commit = commit
    runner.run(max_messages=11)
    assert source.committed == {("in", 0): 11}


def test_checkpoint_for_a_rebalance_marks_without_committing(small_bundle):
    runner, source, sink, _ = _runner(small_bundle, _stream(), batch=4, commit_interval_s=3600)
    runner._process(source.poll(1, 4), runner_totals())
    runner.checkpoint(commit=False)
    assert source.marked == {("in", 0): 4}
    assert source.committed == {}
    assert sink.flushes == 1


def runner_totals():
    from streamvae.service.runner import _Totals

    return _Totals()


def test_commit_interval_defers_commits_but_the_final_commit_happens(small_bundle):
    runner, source, _, _ = _runner(small_bundle, _stream(), batch=2, commit_interval_s=3600)
    runner.run(max_messages=11)
    assert source.commits == 1
    assert source.committed == {("in", 0): 11}


def test_idle_timeout_stops_an_empty_stream(small_bundle):
    runner, _, _, _ = _runner(small_bundle, [])
    stats = runner.run(idle_timeout_s=0.05)
    assert stats.consumed == 0


def test_stop_from_another_thread(small_bundle):
    runner, _, _, _ = _runner(small_bundle, [])
    timer = threading.Timer(0.1, runner.stop)
    timer.start()
    stats = runner.run()
    timer.join()
    assert stats.messages == 0


class _Exploding:
    def handle(self, messages, now_ms):
        raise RuntimeError("model bug")


def test_internal_errors_crash_without_committing_under_fail(small_bundle):
    runner, source, _, metrics = _runner(small_bundle, _stream(), on_processing_error="fail")
    runner.handler = _Exploding()
    with pytest.raises(RuntimeError, match="model bug"):
        runner.run(max_messages=11)
    assert source.commits == 0
    assert metrics.registry.get_sample_value("streamvae_errors_total", {"kind": "scoring"}) == 1


def test_commit_failures_are_counted_and_propagate(small_bundle):
    runner, source, _, metrics = _runner(small_bundle, _stream())

    def fail():
        raise ConnectionError("commit refused")

    source.commit = fail
    with pytest.raises(ConnectionError):
        runner.run(max_messages=11)
    assert metrics.registry.get_sample_value("streamvae_errors_total", {"kind": "commit"}) == 1


class _WatchingSource(FakeSource):
    """Records what was committed each time it is polled with nothing left to give."""

    def __init__(self, messages):
        super().__init__(messages, batch=20)
        self.seen_when_idle: list[dict] = []

    def poll(self, timeout_ms, max_records=None):
        out = super().poll(timeout_ms, max_records)
        if not out:
            time.sleep(0.01)
            self.seen_when_idle.append(dict(self.committed))
        return out


def test_a_quiet_stream_still_commits_when_due(small_bundle):
    source = _WatchingSource(_stream())
    pipeline = feature_pipeline(
        TabularDetector(small_bundle),
        ModelRef("m", "1"),
        PipelineConfig(alert_topic="a", dead_letter_topic="d"),
    )
    config = RunnerConfig(poll_timeout_ms=1, commit_interval_s=0.05)
    runner = ServiceRunner(
        source, ListSink(), pipeline, ServiceMetrics(CollectorRegistry()), config
    )
    runner.run(idle_timeout_s=0.3)
    assert {("in", 0): 11} in source.seen_when_idle, "committed while idle, before the run ended"


def test_liveness_fails_only_for_a_running_loop_that_stopped_polling():
    from streamvae.service.runner import liveness

    assert liveness(running=False, last_poll=None, now=500.0, stall_timeout_s=60)[0]
    assert liveness(running=True, last_poll=None, now=500.0, stall_timeout_s=60)[0]
    ok, details = liveness(running=True, last_poll=450.0, now=500.0, stall_timeout_s=60)
    assert ok and details == {"loop": "up", "last_poll_age_s": 50.0}
    ok, details = liveness(running=True, last_poll=430.0, now=500.0, stall_timeout_s=60)
    assert not ok and details["loop"] == "stalled"


def test_the_runner_stamps_every_poll_even_an_empty_one(small_bundle):
    runner, *_ = _runner(small_bundle, [])
    before = time.monotonic()
    runner.run(idle_timeout_s=0.05)
    assert runner.last_poll_monotonic is not None and runner.last_poll_monotonic >= before
