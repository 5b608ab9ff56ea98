"""Images/s scored through the real broker: maps off, Rec-Error maps, gradient maps;
batches of 16 and 64 images (.npy uint8, 1x32x32 digits); CPU (and GPU when present).

Maps are computed for alerting images only, so at the calibrated ~1 % alert rate they cost
little; the "storm" rows use a threshold every image exceeds (a map for every image: the
worst case). The default scores ``fused`` (a neighbour index and the code length of every
image on top of the VAE); the "neg_elbo" rows are the VAE alone, calibrated, for the cost
of the rest. Median of 3 runs per cell.
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import pytest
import torch

from streamvae.bundle import save_bundle
from streamvae.bundle.image import ImageDetector
from streamvae.data.images import builtin_digits, encode_npy
from streamvae.stream.admin import ensure_topics
from streamvae.thresholds import CalibrationSpec, calibrate_set
from streamvae.workflows.images import ImageSettings, train_images
from tests.benchmarks.harness import producer, serve_settings, service_run, write_json

IMAGES = 4096
MAPS = ("off", "rec_error", "elbo_grad")


@pytest.fixture(scope="module")
def image_models(tmp_path_factory):
    images, _ = builtin_digits(32)
    bundle = train_images(images[:1200], ImageSettings(epochs=5, device="cpu"))
    detector = ImageDetector(bundle)
    scores = detector.select(detector.score(images[1200:].reshape(len(images) - 1200, -1)))
    storm, _ = calibrate_set(
        scores - scores.max(), CalibrationSpec(percentile=50.0), score_kind=bundle.score_kind
    )
    root = tmp_path_factory.mktemp("img")
    plain = train_images(
        images[:1200], ImageSettings(epochs=5, device="cpu", score_kind="neg_elbo")
    )
    return {
        "calibrated": save_bundle(bundle, root / "calibrated"),
        "storm": save_bundle(bundle.with_threshold(storm), root / "storm"),
        "neg_elbo": save_bundle(plain, root / "neg_elbo"),
    }


def _fill(broker: str, topic: str, pool: np.ndarray, batch: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    p = producer(broker)
    n_messages = IMAGES // batch
    for i in range(n_messages):
        chunk = pool[rng.integers(0, len(pool), size=batch)]
        ids = json.dumps([f"{i}-{j}" for j in range(batch)]).encode()
        p.send(topic, encode_npy(chunk), headers=[("content-type", b"application/x-npy"),
                                                  ("ids", ids)])  # fmt: skip
    p.flush()
    p.close()
    return n_messages


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_image_throughput(broker, image_models, tmp_path):
    images, _ = builtin_digits(32)
    pool = np.round(images * 255).astype(np.uint8)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        for model in ("calibrated", "storm", "neg_elbo"):
            for batch in (16, 64):
                for maps in MAPS:
                    rates, alerted = [], 0
                    for run_no in range(3):
                        topic = f"img-{model}-{device}-{batch}-{maps}-{run_no}-{time.time_ns()}"
                        base = serve_settings(
                            broker, image_models[model], tmp_path, topic, f"g-{topic}"
                        )
                        ensure_topics(base.kafka, (topic, f"{topic}-alerts", f"{topic}-dlq"))
                        n_messages = _fill(broker, topic, pool, batch, run_no)
                        settings = base.model_copy(update={
                            "image_maps": maps, "device": device, "max_message_bytes": 16_777_216})  # fmt: skip
                        run = service_run(settings, n_messages)
                        rates.append(
                            run.scored / run.active_s if run.active_s > 0 else float("nan")
                        )
                        alerted = run.alerted
                    results.append({"device": device, "thresholds": model, "batch": batch,
                                    "maps": maps, "images_per_s": statistics.median(rates),
                                    "alert_share": alerted / IMAGES})  # fmt: skip
    print(
        "\nimages/s through the broker (1x32x32 uint8 digits, .npy batches, one process, median of 3)"
    )
    print("| device | thresholds (alert share) | batch | maps off | rec_error | elbo_grad |")
    print("|---|---|---|---|---|---|")
    for r0 in results[:: len(MAPS)]:
        cells = [
            r["images_per_s"]
            for r in results
            if all(r[k] == r0[k] for k in ("device", "thresholds", "batch"))
        ]
        print(f"| {r0['device']} | {r0['thresholds']} ({r0['alert_share']:.0%}) | {r0['batch']} | "
              + " | ".join(f"{c:,.0f}" for c in cells) + " |")  # fmt: skip
    write_json("image_throughput.json", results)
    assert all(r["images_per_s"] > 0 for r in results)
