"""The image pipeline with in-memory messages: per-image scores, alerts with regions, bad input."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from streamvae.bundle.image import ImageDetector
from streamvae.data.images import encode_npy, paste_anomalies
from streamvae.service import PipelineConfig, ScoringPipeline
from streamvae.service.images import ImageMaps, image_pipeline
from streamvae.types import InboundMessage, ModelRef
from tests.factories import digit_split, make_image_bundle

HEADERS = (("content-type", b"application/x-npy"),)


@pytest.fixture(scope="module")
def bundle():
    return make_image_bundle()


MAP_FIELDS = {"maps", "map_dir", "map_max_files"}


def pipeline(bundle, **extra) -> ScoringPipeline:
    values = {"alert_topic": "alerts", "dead_letter_topic": "dlq", "score_topic": "scores"}
    values |= {k: v for k, v in extra.items() if k not in MAP_FIELDS}
    maps = ImageMaps(**{k: v for k, v in extra.items() if k in MAP_FIELDS})
    config = PipelineConfig(max_message_bytes=16_777_216, **values)
    return image_pipeline(ImageDetector(bundle), ModelRef("img", "1"), config, maps)


def message(array, offset=0, ids=None, headers=HEADERS) -> InboundMessage:
    extra = () if ids is None else (("ids", json.dumps(ids).encode()),)
    return InboundMessage("img", 0, offset, encode_npy(array), b"camera-1", 1_000, headers + extra)


def decoded(outcome, topic):
    return [orjson.loads(m.value) for m in outcome.outbound if m.topic == topic]


@pytest.fixture(scope="module")
def held_out():
    return digit_split(16)[1][:64]


def test_normal_images_score_and_pasted_anomalies_alert_with_a_region(bundle, held_out, tmp_path):
    pasted, masks, _ = paste_anomalies(held_out[:16], seed=1, kinds=("noise",), size=0.5)
    batch = np.concatenate([held_out[16:48], pasted])
    ids = [f"n{i}" for i in range(32)] + [f"a{i}" for i in range(16)]
    out = pipeline(bundle, map_dir=str(tmp_path)).handle([message(batch, ids=ids)], 5_000)
    assert out.records_consumed == out.records_scored == 48
    scores = decoded(out, "scores")
    assert [s["id"] for s in scores] == ids
    alerts = decoded(out, "alerts")
    alerted = {a["id"] for a in alerts}
    assert len(alerted & {f"a{i}" for i in range(16)}) >= 11, "large noise squares alert"
    assert len(alerted - {f"a{i}" for i in range(16)}) <= 3
    for alert in alerts:
        if alert["id"].startswith("n"):
            continue
        i = int(alert["id"][1:])
        explanation = alert["explanation"]
        assert explanation["map"] == "rec_error" and explanation["area_fraction"] > 0
        peak = explanation["peak"]
        box = explanation["bbox"]
        assert box["y0"] <= peak["y"] <= box["y1"] and box["x0"] <= peak["x"] <= box["x1"]
        ys, xs = np.nonzero(masks[i])
        overlap = not (box["y1"] < ys.min() or box["y0"] > ys.max() or box["x1"] < xs.min()
                       or box["x0"] > xs.max())  # fmt: skip
        assert overlap, "the box covers the pasted square"
        saved = np.load(explanation["map_path"], allow_pickle=False)
        assert saved.shape == (16, 16)


def test_uint8_and_float_batches_give_the_same_scores(bundle, held_out):
    u8 = np.round(held_out[:8] * 255).astype(np.uint8)
    a = decoded(pipeline(bundle).handle([message(u8)], 0), "scores")
    b = decoded(pipeline(bundle).handle([message(u8.astype(np.float32) / 255.0)], 0), "scores")
    assert [x["score"] for x in a] == pytest.approx([x["score"] for x in b], rel=1e-5)


def test_a_bad_image_is_dead_lettered_alone_and_a_bad_batch_whole(bundle, held_out):
    mixed = held_out[:5].copy()
    mixed[2, 0, 0, 0] = np.nan
    wrong = np.zeros((3, 1, 8, 8), np.uint8)
    out = pipeline(bundle).handle(
        [
            message(mixed, 0),
            message(wrong, 1),
            message(held_out[:2], 2, headers=(("content-type", b"text/plain"),)),
        ],
        0,
    )
    assert out.records_consumed == 5 + 1 + 1
    assert out.records_scored == 4
    assert out.dead_letters == {"non_finite": 1, "invalid_image": 2}
    assert out.records_consumed == out.records_scored + sum(out.dead_letters.values())
    letters = [m for m in out.outbound if m.topic == "dlq"]
    single = next(m for m in letters if dict(m.headers)["error"] == b"non_finite")
    assert dict(single.headers)["source"] == b"img:0:0:2"
    assert np.load(__import__("io").BytesIO(single.value)).shape == (1, 1, 16, 16)


def test_maps_can_be_off_or_a_gradient(bundle, held_out):
    pasted, _, _ = paste_anomalies(held_out[:8], seed=2, kinds=("noise",), size=0.5)
    off = decoded(pipeline(bundle, maps="off").handle([message(pasted)], 0), "alerts")
    grad = decoded(pipeline(bundle, maps="elbo_grad").handle([message(pasted)], 0), "alerts")
    assert off and all("explanation" not in a for a in off)
    assert grad and all(a["explanation"]["map"] == "elbo_grad" for a in grad)


def test_map_files_are_kept_to_a_count_and_a_write_error_turns_them_off(
    bundle, held_out, tmp_path, monkeypatch
):
    pasted, _, _ = paste_anomalies(held_out[:8], seed=2, kinds=("noise",), size=0.5)
    maps = tmp_path / "maps"
    pipe = pipeline(bundle, map_dir=str(maps), map_max_files=3)
    for offset in range(3):
        alerts = decoded(pipe.handle([message(pasted, offset)], 0), "alerts")
        assert alerts and all("map_path" in a["explanation"] for a in alerts)
    assert len(list(maps.glob("*.npy"))) == 3, "only the newest map files are kept"

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    third, fourth = message(pasted, 3), message(pasted, 4)  # encoded before the disk fills
    monkeypatch.setattr(np, "save", disk_full)
    out = pipe.handle([third], 0)
    alerts = decoded(out, "alerts")
    assert alerts, "alerts are still sent"
    assert all("map_path" not in a["explanation"] for a in alerts)
    assert out.errors == {"map_write": 1}, "counted once, then map files are off"
    assert pipe.input.map_store is not None and pipe.input.map_store.disabled
    assert decoded(pipe.handle([fourth], 0), "alerts")


def test_image_ids_of_any_length_are_bounded(bundle, held_out):
    out = pipeline(bundle).handle([message(held_out[:2], ids=["x" * 10_000, 7])], 0)
    scores = decoded(out, "scores")
    assert len(scores[0]["id"]) == 256 and scores[1]["id"] == "7"
    assert all(len(m.key or b"") <= 1_024 for m in out.outbound)


def test_a_28x28_model_serves_28x28_batches_with_28x28_maps(tmp_path):
    from streamvae.data.images import builtin_digits
    from streamvae.workflows.images import ImageSettings, train_images

    small, _ = builtin_digits(24)
    images = np.pad(small, ((0, 0), (0, 0), (2, 2), (2, 2)))  # 28x28, as MNIST
    settings = ImageSettings(latent_dim=8, channels=(8, 16), epochs=3, device="cpu")
    bundle = train_images(images[:600], settings)
    assert bundle.preprocess.shape.as_tuple() == (1, 28, 28)
    pasted, _, _ = paste_anomalies(images[600:608], seed=1, kinds=("noise",), size=0.5)
    batch = np.round(np.concatenate([images[610:618], pasted]) * 255).astype(np.uint8)[:, 0]
    out = pipeline(bundle, map_dir=str(tmp_path)).handle([message(batch)], 0)
    assert out.records_consumed == out.records_scored == 16
    assert len(decoded(out, "scores")) == 16 and not decoded(out, "dlq")
    alerts = decoded(out, "alerts")
    assert alerts, "half-image noise squares alert"
    for alert in alerts:
        peak = alert["explanation"]["peak"]
        assert 0 <= peak["y"] < 28 and 0 <= peak["x"] < 28
        assert np.load(alert["explanation"]["map_path"], allow_pickle=False).shape == (28, 28)
