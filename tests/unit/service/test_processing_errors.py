"""The processing-error policy: an exception while handling a batch is isolated to the
messages that cause it, which are dead-lettered; a handler that fails on everything stops
the service without committing; an output too large for the broker never fails delivery."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry

from streamvae.bundle import TabularDetector
from streamvae.errors import ProcessingHaltedError
from streamvae.metrics import ServiceMetrics
from streamvae.service import PipelineConfig, RunnerConfig, ServiceRunner
from streamvae.service.features import feature_pipeline
from streamvae.service.outcome import BatchOutcome, fit_output, output_size
from streamvae.thresholds import DriftMonitor
from streamvae.types import InboundMessage, ModelRef, OutboundMessage
from tests.factories import FakeSource, ListSink, encode, feature_message, inbound, make_normal


class _PoisonedPipeline:
    """A real feature pipeline that raises on any batch holding a ``poison`` message."""

    def __init__(self, bundle) -> None:
        self.inner = feature_pipeline(
            TabularDetector(bundle),
            ModelRef("m", "1"),
            PipelineConfig(alert_topic="alerts", dead_letter_topic="dlq", score_topic="scores"),
        )
        self.calls = 0

    def handle(self, messages, now_ms):
        self.calls += 1
        if any(b"poison" in (m.value or b"") for m in messages):
            raise KeyError("poison")  # what a bug in record handling would raise
        return self.inner.handle(messages, now_ms)

    def drift_snapshot(self):
        return self.inner.drift_snapshot()

    def checkpoint_messages(self):
        return []


def _empty_snapshot():
    return DriftMonitor(np.zeros(10), 0.01, window=10, min_count=5).snapshot()


class _Broken:
    """A handler that fails on everything (a broken model bundle)."""

    def handle(self, messages, now_ms):
        raise RuntimeError("broken model")

    def drift_snapshot(self):
        return _empty_snapshot()

    def checkpoint_messages(self):
        return []


def _good(n: int, seed: int = 5) -> list[bytes]:
    rows = make_normal(n, seed=seed)
    return [encode(feature_message(r, rid=f"g{i}", ts=9_000)) for i, r in enumerate(rows)]


def _runner(handler, messages, batch=10, **config):
    source, sink = FakeSource(messages, batch=batch), ListSink()
    metrics = ServiceMetrics(CollectorRegistry())
    runner = ServiceRunner(
        source, sink, handler, metrics,
        RunnerConfig(poll_timeout_ms=1, dead_letter_topic="dlq", **config), lambda: 10_000,
    )  # fmt: skip
    return runner, source, sink, metrics


def test_a_failing_message_is_dead_lettered_and_its_batch_neighbours_are_scored(small_bundle):
    good = _good(8)
    values = [*good[:3], b'{"poison": 1}', *good[3:6], b'{"poison": 2}', *good[6:]]
    runner, source, sink, metrics = _runner(_PoisonedPipeline(small_bundle), inbound(values))
    stats = runner.run(max_messages=len(values))
    assert (stats.consumed, stats.scored, stats.dead_lettered) == (10, 8, 2)
    assert stats.dead_letter_reasons == {"processing_error": 2}
    dead = sink.on("dlq")
    assert [m.value for m in dead] == [b'{"poison": 1}', b'{"poison": 2}']  # original bytes
    headers = dict(dead[0].headers)
    assert headers["error"] == b"processing_error"
    assert headers["exception"] == b"KeyError"
    assert headers["detail"].startswith(b"KeyError: ")
    assert headers["source"] == b"in:0:3:-1"
    assert len(sink.on("scores")) == 8
    assert source.committed == {("in", 0): 10}  # the partition moves past the poison
    get = metrics.registry.get_sample_value
    assert get("streamvae_records_dead_lettered_total", {"reason": "processing_error"}) == 2
    assert get("streamvae_records_scored_total") == 8
    assert get("streamvae_errors_total", {"kind": "scoring"}) == 1  # one failed batch


def test_a_handler_that_fails_on_everything_stops_without_committing():
    values = inbound([b'{"a": 1}'] * 30)
    runner, source, sink, metrics = _runner(_Broken(), values, max_consecutive_failures=25)
    with pytest.raises(ProcessingHaltedError, match="25 messages in a row failed"):
        runner.run()
    assert source.commits == 0  # restarted, the replica reads the same records again
    # polls of 10: the first two were dead-lettered, the third stopped at the 25th failure
    assert len(sink.sent) == 20  # fewer than max_consecutive_failures: never a whole stream
    assert metrics.registry.get_sample_value("streamvae_up") == 0


def test_failures_that_are_not_consecutive_never_stop_the_service(small_bundle):
    good = _good(20)
    values = [v for g in good for v in (g, b'{"poison": 0}')]  # every other message fails
    runner, source, _, _ = _runner(
        _PoisonedPipeline(small_bundle), inbound(values), max_consecutive_failures=2
    )
    stats = runner.run(max_messages=len(values))
    assert (stats.scored, stats.dead_lettered) == (20, 20)
    assert source.committed == {("in", 0): 40}


def test_fail_policy_keeps_the_old_behaviour(small_bundle):
    values = inbound([*_good(3), b'{"poison": 1}'])
    runner, source, _, _ = _runner(
        _PoisonedPipeline(small_bundle), values, on_processing_error="fail"
    )
    with pytest.raises(KeyError):
        runner.run()
    assert source.commits == 0


class _Huge:
    """Produces one alert too large for the broker per message."""

    def handle(self, messages, now_ms):
        outcome = BatchOutcome()
        for m in messages:
            outcome.offsets[(m.topic, m.partition)] = m.offset + 1
            outcome.records_consumed += 1
            outcome.records_scored += 1
            outcome.outbound.append(OutboundMessage("alerts", b"x" * 5_000, b"k"))
        return outcome

    def drift_snapshot(self):
        return _empty_snapshot()

    def checkpoint_messages(self):
        return []


def test_an_oversize_output_becomes_a_dead_letter_that_fits():
    runner, source, sink, metrics = _runner(_Huge(), inbound([b"{}"] * 3), max_output_bytes=2_048)
    runner.run(max_messages=3)
    assert sink.on("alerts") == []
    dead = sink.on("dlq")
    assert len(dead) == 3
    assert all(output_size(m) <= 2_048 for m in dead)
    headers = dict(dead[0].headers)
    assert headers["error"] == b"output_too_large" and headers["target-topic"] == b"alerts"
    assert dead[0].value == b"x" * len(dead[0].value)  # the head of the output
    assert source.committed == {("in", 0): 3}
    get = metrics.registry.get_sample_value
    assert get("streamvae_errors_total", {"kind": "output_too_large"}) == 3


def test_fit_output_truncates_dead_letters_and_keeps_what_fits():
    small = OutboundMessage("alerts", b"{}", b"k")
    assert fit_output(small, 1_024, "dlq") is small
    headers = (("error", b"too_large"), ("source", b"in:0:1:-1"), ("x", b"y" * 5_000))
    letter = OutboundMessage("dlq", b"v" * 10_000, b"k" * 4_000, headers)
    fitted = fit_output(letter, 2_048, "dlq")
    assert output_size(fitted) <= 2_048
    kept = dict(fitted.headers)
    assert kept["truncated"] == b"10000" and kept["error"] == b"too_large"
    assert "x" not in kept  # a header too large for the budget is left out
    assert fitted.value == b"v" * len(fitted.value) and len(fitted.value) > 0
    assert fitted.key == b"k" * 1_024
    tombstone = OutboundMessage("state", None, b"series")
    assert fit_output(tombstone, 1_024, "dlq") is tombstone


def test_records_with_keys_and_ids_of_any_json_type_are_scored(small_bundle):
    """``{"features": [...], "key": 7}`` raised AttributeError (``key.encode()``) and
    crash-looped every replica on the same record."""
    pipeline = feature_pipeline(
        TabularDetector(small_bundle),
        ModelRef("m", "1"),
        PipelineConfig(alert_topic="alerts", dead_letter_topic="dlq", score_topic="scores"),
    )
    row = make_normal(1, seed=3)[0].tolist()
    odd = [7, {}, [], True, 1.5, 2**70, "x" * 5_000, {"a": [1, None]}, None, ""]
    values = [json.dumps({"features": row, "key": v, "id": v}).encode() for v in odd]
    messages = [InboundMessage("in", 0, i, v, b"msg-key") for i, v in enumerate(values)]
    outcome = pipeline.handle(messages, now_ms=0)
    assert outcome.records_scored == len(odd) and not outcome.dead_letters
    records = [orjson.loads(m.value) for m in outcome.outbound if m.topic == "scores"]
    keys = [r["key"] for r in records]
    assert keys[:5] == ["7", "{}", "[]", "true", "1.5"]
    assert float(keys[5]) == float(2**70)  # the JSON parser reads it as a float
    assert len(keys[6]) == 256 and keys[6].startswith("xxx")  # bounded, digest-suffixed
    assert keys[7] == '{"a":[1,null]}'
    assert keys[8] == "msg-key"  # null: the message key
    assert [r["id"] for r in records][:3] == ["7", "{}", "[]"]
    assert all(m.key is not None and len(m.key) <= 1_024 for m in outcome.outbound)
