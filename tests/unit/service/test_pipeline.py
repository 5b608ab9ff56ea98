from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from streamvae.bundle import TabularDetector
from streamvae.service import PipelineConfig
from streamvae.service.features import feature_pipeline
from streamvae.types import ModelRef
from tests.factories import (
    encode,
    feature_message,
    inbound,
    make_anomalies,
    make_bundle,
    make_normal,
)

CONFIG = PipelineConfig(
    alert_topic="alerts", dead_letter_topic="dlq", score_topic="scores", max_message_bytes=4096
)


@pytest.fixture
def pipeline(small_bundle):
    return feature_pipeline(TabularDetector(small_bundle), ModelRef("m", "1", "champion"), CONFIG)


def _decode(messages, topic):
    return [orjson.loads(m.value) for m in messages if m.topic == topic]


def test_normal_records_score_without_alerts(pipeline):
    rows = make_normal(20, seed=11)
    out = pipeline.handle(
        inbound([encode(feature_message(r, rid=f"n{i}")) for i, r in enumerate(rows)]), 5_000
    )
    assert out.records_consumed == out.records_scored == 20
    assert len(_decode(out.outbound, "scores")) == 20
    assert sum(out.alerts.values()) <= 2
    assert out.offsets == {("in", 0): 20}


def test_anomalies_alert_with_the_contract_fields(pipeline):
    out = pipeline.handle(
        inbound([encode(feature_message(make_anomalies(1, seed=4)[0] * 3, rid="odd", ts=900))]),
        5_000,
    )
    (alert,) = _decode(out.outbound, "alerts")
    assert set(alert) == {
        "alert_id", "id", "key", "ts", "scored_at", "model", "score_kind", "score", "threshold",
        "p_value", "severity", "components", "explanation",
    }  # fmt: skip
    assert alert["alert_id"] == "in:0:0:0"
    assert (alert["id"], alert["ts"], alert["scored_at"]) == ("odd", 900, 5_000)
    assert alert["model"] == {"name": "m", "version": "1"}
    assert alert["score"] > alert["threshold"]
    assert alert["severity"] in ("warning", "critical")
    assert 0 < alert["p_value"] <= 0.01, "an alert at the 99th percentile is a rare score"
    assert alert["components"]["recon"] + alert["components"]["kl"] == pytest.approx(
        alert["score"], rel=1e-6
    )
    top = alert["explanation"]["top_features"]
    assert len(top) == 3
    assert {"feature", "value", "expected", "contribution"} == set(top[0])
    assert top[0]["contribution"] >= top[1]["contribution"] >= top[2]["contribution"]


def test_list_features_and_batches(pipeline):
    rows = make_normal(5, seed=2)
    batch = [feature_message(r, rid=f"b{i}", as_list=True) for i, r in enumerate(rows)]
    out = pipeline.handle(inbound([encode(batch)]), 1)
    ids = [s["alert_id"] for s in _decode(out.outbound, "scores")]
    assert ids == [f"in:0:0:{i}" for i in range(5)]


def test_scores_equal_offline_scores(pipeline, small_bundle):
    rows = make_normal(8, seed=21)
    out = pipeline.handle(inbound([encode([feature_message(r) for r in rows])]), 1)
    streamed = [s["score"] for s in _decode(out.outbound, "scores")]
    det = TabularDetector(small_bundle)
    assert np.allclose(streamed, det.select(det.score(rows)), rtol=1e-6)


BAD = {
    "invalid_json": b"{oops",
    "non_finite": json.dumps({"features": [float("nan")] * 6}).encode(),
    "too_large": b'{"features": [' + b"1.0," * 2000 + b"1.0]}",
    "invalid_record": b'{"no_features": 1}',
    "schema_mismatch": b'{"features": {"x0": 1.0}}',
    "invalid_encoding": b'{"features": "\xff"}',
}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_each_bad_input_is_dead_lettered_with_its_reason(pipeline, reason):
    out = pipeline.handle(inbound([BAD[reason]]), 1)
    (dead,) = [m for m in out.outbound if m.topic == "dlq"]
    headers = dict(dead.headers)
    assert headers["error"] == reason.encode()
    assert headers["detail"]
    assert headers["source"] == b"in:0:0:-1" or headers["source"].startswith(b"in:0:0:")
    assert out.dead_letters == {reason: 1}
    assert out.records_consumed == 1 and out.records_scored == 0


def test_float32_overflow_is_non_finite(pipeline):
    record = {"features": [1e300] + [1.0] * 5}
    out = pipeline.handle(inbound([encode(record)]), 1)
    assert out.dead_letters == {"non_finite": 1}


def test_one_bad_element_does_not_sink_its_batch(pipeline):
    good = [feature_message(r) for r in make_normal(3, seed=1)]
    batch = [good[0], {"features": {"x0": 1}}, good[1], "junk", good[2]]
    out = pipeline.handle(inbound([encode(batch)]), 1)
    assert out.records_consumed == 5
    assert out.records_scored == 3
    assert out.dead_letters == {"schema_mismatch": 1, "invalid_record": 1}
    dlq = [dict(m.headers)["source"] for m in out.outbound if m.topic == "dlq"]
    assert dlq == [b"in:0:0:1", b"in:0:0:3"]


def test_accounting_invariant_on_a_mixed_stream(pipeline):
    values = [encode(feature_message(r)) for r in make_normal(10, seed=3)] + list(BAD.values())
    values.append(encode([feature_message(r) for r in make_normal(4, seed=4)] + [{"x": 1}]))
    out = pipeline.handle(inbound(values), 1)
    assert out.records_consumed == out.records_scored + sum(out.dead_letters.values())
    assert out.records_scored == 14


def _segmented_pipeline(small_bundle):
    from dataclasses import replace

    from streamvae.thresholds import CalibrationSpec, calibrate_set

    det = TabularDetector(small_bundle)
    normal = det.select(det.score(make_normal(900, seed=30)))
    # segment "loose" tolerates scores twice as high as everyone else
    scores = np.r_[normal[:450], normal[450:] * 2.0]
    segments = ["tight"] * 450 + ["loose"] * 450
    spec = CalibrationSpec(percentile=99, segment_field="merchant", min_segment_size=300)
    thresholds, _ = calibrate_set(scores, spec, score_kind="neg_elbo", segments=segments)
    bundle = replace(small_bundle, threshold=thresholds)
    return feature_pipeline(TabularDetector(bundle), ModelRef("m", "1"), CONFIG), thresholds


def test_segments_pick_their_threshold_from_the_record_or_its_context(small_bundle):
    pipeline, thresholds = _segmented_pipeline(small_bundle)
    row = make_normal(1, seed=31)[0]
    records = [
        feature_message(row, rid="t") | {"merchant": "tight"},
        feature_message(row, rid="l") | {"context": {"merchant": "loose"}},
        feature_message(row, rid="u") | {"merchant": "unknown"},
        feature_message(row, rid="n"),
    ]
    out = pipeline.handle(inbound([encode(records)]), 1)
    scores = {s["id"]: s for s in _decode(out.outbound, "scores")}
    assert scores["t"]["threshold"] == thresholds.segments["tight"].value
    assert scores["l"]["threshold"] == thresholds.segments["loose"].value
    assert scores["u"]["threshold"] == scores["n"]["threshold"] == thresholds.default.value
    assert (scores["t"]["segment"], scores["l"]["segment"], scores["n"]["segment"]) == (
        "tight",
        "loose",
        None,
    )
    assert scores["t"]["p_value"] != scores["l"]["p_value"], (
        "p-values come from the segment's scores"
    )


def test_drift_snapshot_follows_the_live_scores(small_bundle):
    config = PipelineConfig(
        alert_topic="a", dead_letter_topic="d", drift_window=300, drift_min_count=100
    )
    pipeline = feature_pipeline(TabularDetector(small_bundle), ModelRef("m", "1"), config)
    normal = [encode(feature_message(r)) for r in make_normal(300, seed=40)]
    pipeline.handle(inbound(normal), 1)
    calm = pipeline.drift_snapshot()
    odd = [encode(feature_message(r * 3)) for r in make_anomalies(300, seed=41)]
    pipeline.handle(inbound(odd), 1)
    shifted = pipeline.drift_snapshot()
    assert calm.count == shifted.count == 300
    assert calm.ks < 0.2 and shifted.ks > 0.8
    assert shifted.psi > 1.0 > calm.psi
    assert shifted.alert_rate > 0.9 > 0.05 > calm.alert_rate


def test_an_installed_model_scores_the_next_batch_and_names_its_version(pipeline):
    odd = [encode(feature_message(r * 3, rid=f"a{i}")) for i, r in enumerate(make_anomalies(5))]
    before = _decode(pipeline.handle(inbound(odd), 5_000).outbound, "alerts")
    other = make_bundle(seed=4, epochs=5)
    pipeline.install(TabularDetector(other), ModelRef("m", "2", "champion"))
    after = _decode(pipeline.handle(inbound(odd), 5_000).outbound, "alerts")
    assert {a["model"]["version"] for a in before} == {"1"}
    assert {a["model"]["version"] for a in after} == {"2"}
    assert after[0]["threshold"] == pytest.approx(other.threshold.default.value)
    assert after[0]["score"] != before[0]["score"]


def test_the_shadow_model_counts_would_be_alerts_and_emits_nothing(small_bundle):
    lenient = make_bundle(seed=4, epochs=5, percentile=50.0)
    pipeline = feature_pipeline(TabularDetector(small_bundle), ModelRef("m", "1"), CONFIG)
    rows = make_normal(40, seed=12)
    messages = inbound([encode(feature_message(r, rid=f"n{i}")) for i, r in enumerate(rows)])
    plain = pipeline.handle(messages, 5_000)
    pipeline.input.install_shadow(TabularDetector(lenient), ModelRef("m", "9", "challenger"))
    shadowed = pipeline.handle(messages, 5_000)
    assert [m.value for m in shadowed.outbound] == [m.value for m in plain.outbound]
    assert shadowed.shadow_scored == 40 and plain.shadow_scored == 0
    assert 8 <= sum(shadowed.shadow_alerts.values()) <= 32, "about half at the 50th percentile"
    pipeline.input.install_shadow(None)
    assert pipeline.handle(messages, 5_000).shadow_scored == 0


def test_cooldown_sends_one_alert_per_key_and_counts_the_rest(small_bundle):
    from streamvae.thresholds import HygienePolicy

    config = PipelineConfig(
        alert_topic="alerts", dead_letter_topic="dlq", score_topic="scores",
        hygiene=HygienePolicy(cooldown_ms=60_000),
    )  # fmt: skip
    pipe = feature_pipeline(TabularDetector(small_bundle), ModelRef("m", "1"), config)
    odd = make_anomalies(6, seed=3) * 3
    values = [
        encode(feature_message(r, rid=f"a{i}", ts=1_000 * i) | {"key": "merchant-1"})
        for i, r in enumerate(odd[:4])
    ] + [encode(feature_message(r, rid=f"b{i}", ts=1_000) | {"key": "merchant-2"})
         for i, r in enumerate(odd[4:])]  # fmt: skip
    out = pipe.handle(inbound(values), 5_000)
    alerts = _decode(out.outbound, "alerts")
    scores = _decode(out.outbound, "scores")
    assert [a["id"] for a in alerts] == ["a0", "b0"], "one alert per key per cooldown"
    assert out.suppressed["cooldown"] == 4 and sum(out.alerts.values()) == 2
    assert [s["suppressed"] for s in scores if "suppressed" in s] == ["cooldown"] * 4
    later = pipe.handle(
        inbound([encode(feature_message(odd[0], rid="a9", ts=70_000) | {"key": "merchant-1"})]),
        5_000,
    )
    (alert,) = _decode(later.outbound, "alerts")
    assert alert["id"] == "a9" and alert["suppressed_before"] == 3
