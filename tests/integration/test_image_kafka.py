"""Image batches through the real broker: a good batch, a bad batch and a mixed batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from kafka import KafkaProducer

from streamvae.bundle import save_bundle
from streamvae.data.images import encode_npy, paste_anomalies
from tests.factories import digit_split, make_image_bundle
from tests.integration.kafka_helpers import (
    Topics,
    read_json,
    read_raw,
    running_service,
    serve_settings,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def image_bundle_dir(tmp_path_factory):
    return save_bundle(make_image_bundle(), tmp_path_factory.mktemp("img") / "bundle")


def send(broker: str, topic: str, batches: list[tuple[np.ndarray, list[str] | None]]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker, max_request_size=16_777_216)
    for array, ids in batches:
        headers = [("content-type", b"application/x-npy")]
        if ids is not None:
            headers.append(("ids", json.dumps(ids).encode()))
        producer.send(topic, value=encode_npy(array), key=b"camera-7", headers=headers)
    producer.flush()
    producer.close()


def test_good_bad_and_mixed_batches(broker, image_bundle_dir, tmp_path):
    _, held_out = digit_split(16)
    good = (held_out[:16] * 255).round().astype(np.uint8)  # (N, C, H, W) uint8
    bad = np.zeros((4, 3, 16, 16), np.float32)  # three channels: the model takes one
    pasted, _, _ = paste_anomalies(held_out[16:19], seed=5, kinds=("noise",), size=0.5)
    mixed = np.concatenate([held_out[19:24], pasted])[:, 0]  # (N, H, W) float32
    mixed[1, 3, 3] = np.nan
    mixed_ids = [f"m{i}" for i in range(8)]
    topics = Topics.unique()
    settings = serve_settings(broker, topics, image_bundle_dir, tmp_path).model_copy(
        update={"max_message_bytes": 4_194_304, "image_map_dir": str(tmp_path / "maps")}
    )
    with running_service(settings) as running:
        send(broker, topics.input, [(good, [f"g{i}" for i in range(16)]), (bad, None),
                                    (mixed, mixed_ids)])  # fmt: skip
        scores = read_json(broker, topics.scores, expected=16 + 7)
        dead = read_raw(broker, topics.dead, expected=2)
        alerts = read_json(broker, topics.alerts, expected=3, timeout_s=10)
        get = running.service.metrics.registry.get_sample_value
        consumed = get("streamvae_records_consumed_total")
    ids = {s["id"] for s in scores}
    assert ids == {f"g{i}" for i in range(16)} | (set(mixed_ids) - {"m1"})
    reasons = sorted(dict(m.headers)["error"].decode() for m in dead)
    assert reasons == ["invalid_image", "non_finite"]
    nan_letter = next(m for m in dead if dict(m.headers)["error"] == b"non_finite")
    assert dict(nan_letter.headers)["source"].endswith(b":1")
    assert consumed == 16 + 1 + 8
    alerted = {a["id"] for a in alerts}
    assert len(alerted & {"m5", "m6", "m7"}) >= 2, "the pasted noise squares alert"
    for alert in alerts:
        explanation = alert["explanation"]
        assert alert["score"] > alert["threshold"] and explanation["map"] == "rec_error"
        assert np.load(explanation["map_path"]).shape == (16, 16)


def test_a_npy_header_declaring_terabytes_is_dead_lettered_between_good_batches(
    broker, image_bundle_dir, tmp_path
):
    """A 1,152-byte ``.npy`` claiming a huge shape made numpy try to allocate ~900 TiB: the
    MemoryError escaped and every replica crash-looped on it."""
    import io

    _, held_out = digit_split(16)
    good = (held_out[:4] * 255).round().astype(np.uint8)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 1, 512, 512)}
    )
    bomb = header.getvalue() + bytes(1_152 - len(header.getvalue()))
    topics = Topics.unique()
    settings = serve_settings(broker, topics, image_bundle_dir, tmp_path, partitions=1)
    with running_service(settings) as running:
        send(broker, topics.input, [(good, [f"a{i}" for i in range(4)])])
        producer = KafkaProducer(bootstrap_servers=broker)
        producer.send(topics.input, value=bomb, headers=[("content-type", b"application/x-npy")])
        producer.flush()
        producer.close()
        send(broker, topics.input, [(good, [f"b{i}" for i in range(4)])])
        scores = read_json(broker, topics.scores, expected=8, partitions=1)
        dead = read_raw(broker, topics.dead, expected=1, partitions=1)
        assert running.thread.is_alive()
    assert {s["id"] for s in scores} == {f"a{i}" for i in range(4)} | {f"b{i}" for i in range(4)}
    assert dead[0].value == bomb
    headers = dict(dead[0].headers)
    assert headers["error"] == b"invalid_image" and b"declares float32" in headers["detail"]
