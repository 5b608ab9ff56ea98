"""``streamvae demo --kind images``: digit images through the embedded broker with live alerts.

The built-in digits (upsampled to 32x32) are shuffled; most train a convolutional VAE
(``streamvae train-images``' workflow, registered in MLflow), the held-out ones are streamed
as ``.npy`` batches, a quarter of them with a local anomaly pasted in (noise square, blob or
a piece of another digit; the ground-truth mask is known). Each alert's bounding box is
checked against the pasted region. One malformed batch and one batch with a NaN image show
the dead-letter topic.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from streamvae.data.images import builtin_digits, encode_npy, paste_anomalies
from streamvae.demos.harness import (
    DemoTopics,
    background_service,
    demo_tracking,
    embedded,
    linger,
    serve_settings,
)
from streamvae.scoring import roc_auc
from streamvae.stream.tools import produce_messages, read_topic
from streamvae.training import TrainingCallback
from streamvae.types import OutboundMessage, RunStats
from streamvae.workflows.images import ImageSettings, train_and_register

logger = logging.getLogger(__name__)

MODEL_NAME = "streamvae-demo-images"
TOPICS = DemoTopics.named("demo-img")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageDemoSettings:
    """Knobs of the image demo."""

    work_dir: Path | None = None
    size: int = 32
    streamed: int = 256
    anomaly_share: float = 0.25
    batch_size: int = 16
    model: str = "conv2d_vae"
    latent_dim: int = 32
    epochs: int = 30
    percentile: float = 99.0
    maps: str = "rec_error"
    seed: int = 0
    linger_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ImageDemoReport:
    """What the image demo prints."""

    images: int
    anomalies: int
    scored: int
    alerts: int
    true_alerts: int
    boxes_on_target: int
    auroc: float
    dead_lettered: int
    throughput_ips: float
    train_s: float
    model_uri: str
    metrics_url: str
    run: RunStats


def run_image_demo(
    cfg: ImageDemoSettings,
    callbacks: list[TrainingCallback] | None = None,
    say: Callable[[str], None] = logger.info,
) -> ImageDemoReport:
    """Train on normal digits, then stream held-out and corrupted ones through the service."""
    with embedded("streamvae-demo-img", cfg.work_dir, say) as (bootstrap, work):
        return _run(cfg, work, bootstrap, callbacks or [], say)


def _stream(cfg: ImageDemoSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, streamed images, anomaly labels, masks)."""
    images, _ = builtin_digits(cfg.size)
    order = np.random.default_rng(cfg.seed).permutation(len(images))
    train, held = images[order[: -cfg.streamed]], images[order[-cfg.streamed :]].copy()
    n_bad = int(cfg.streamed * cfg.anomaly_share)
    pasted, masks_bad, _ = paste_anomalies(held[:n_bad], seed=cfg.seed + 1, size=0.3)
    held[:n_bad] = pasted
    masks = np.zeros((cfg.streamed, cfg.size, cfg.size), bool)
    masks[:n_bad] = masks_bad
    labels = np.r_[np.ones(n_bad), np.zeros(cfg.streamed - n_bad)]
    shuffle = np.random.default_rng(cfg.seed + 2).permutation(cfg.streamed)
    return train, held[shuffle], labels[shuffle], masks[shuffle]


def _run(
    cfg: ImageDemoSettings, work: Path, bootstrap: str, callbacks: list[TrainingCallback],
    say: Callable[[str], None],
) -> ImageDemoReport:  # fmt: skip
    train, stream, labels, masks = _stream(cfg)
    say(f"training {cfg.model} on {len(train)} normal digits ({cfg.size}x{cfg.size})")
    tracking = demo_tracking(work, MODEL_NAME, "demo-img")
    settings = ImageSettings(
        model=cfg.model, latent_dim=cfg.latent_dim, epochs=cfg.epochs, seed=cfg.seed,
        percentile=cfg.percentile, device="auto", learning_rate=2e-3,
    )  # fmt: skip
    outcome = train_and_register(train, settings, tracking, callbacks, log=say)
    say(f"registered {MODEL_NAME} v{outcome.version} as @champion")
    serve = serve_settings(
        bootstrap, TOPICS, tracking, partitions=1, image_maps=cfg.maps, max_message_bytes=8_388_608
    )
    with background_service(serve) as (service, stats):
        say(f"streaming {len(stream)} images in batches of {cfg.batch_size} into {TOPICS.input!r}")
        started = time.monotonic()
        produce_messages(bootstrap, _batches(stream, cfg.batch_size))
        # the streamed images, and the sound image of the batch with a NaN one
        scores = read_topic(bootstrap, TOPICS.scores, partitions=1, expected=len(stream) + 1,
                            timeout_s=180)  # fmt: skip
        elapsed = time.monotonic() - started
        alerts = read_topic(
            bootstrap, TOPICS.alerts, partitions=1, expected=len(stream), timeout_s=5
        )
        dead = read_topic(bootstrap, TOPICS.dead, partitions=1, expected=2, timeout_s=10)
        metrics_url = linger(service, cfg.linger_s, say)
    records = (orjson.loads(m.value or b"{}") for m in scores)
    by_id = {r["id"]: r for r in records if str(r.get("id")).startswith("img-")}
    fired = [
        a for a in (orjson.loads(m.value or b"{}") for m in alerts)
        if str(a.get("id")).startswith("img-")
    ]  # fmt: skip
    index = [by_id.get(f"img-{i}") for i in range(len(stream))]
    observed = np.array([r is not None for r in index])
    score = np.array([r["score"] if r is not None else np.nan for r in index])
    true_alerts = [a for a in fired if labels[int(a["id"].split("-")[1])] == 1]
    on_target = sum(_box_hits(a, masks[int(a["id"].split("-")[1])]) for a in true_alerts)
    return ImageDemoReport(
        images=len(stream), anomalies=int(labels.sum()), scored=len(by_id), alerts=len(fired),
        true_alerts=len(true_alerts), boxes_on_target=on_target,
        auroc=roc_auc(labels[observed], score[observed]), dead_lettered=len(dead),
        throughput_ips=len(by_id) / elapsed if elapsed > 0 else float("nan"),
        train_s=outcome.seconds, model_uri=serve.model_uri, metrics_url=metrics_url,
        run=stats[0] if stats else RunStats(),
    )  # fmt: skip


def _batches(stream: np.ndarray, batch_size: int) -> Iterator[OutboundMessage]:
    """The stream as ``.npy`` batches, then a batch with a NaN image and one that is no array."""
    npy = ("content-type", b"application/x-npy")
    for start in range(0, len(stream), batch_size):
        batch = np.round(stream[start : start + batch_size] * 255).astype(np.uint8)
        ids = json.dumps([f"img-{i}" for i in range(start, start + len(batch))]).encode()
        yield OutboundMessage(TOPICS.input, encode_npy(batch), b"camera-1", (npy, ("ids", ids)))
    broken = np.full((2, *stream.shape[1:]), 0.5, np.float32)
    broken[1, 0, 0, 0] = np.nan  # one bad image: dead-lettered alone
    yield OutboundMessage(
        TOPICS.input, encode_npy(broken), b"camera-1", (npy, ("ids", b'["nan-0", "nan-1"]'))
    )
    yield OutboundMessage(TOPICS.input, b"not an array", b"camera-1", (npy,))  # dead-lettered whole


def _box_hits(alert: dict[str, object], mask: np.ndarray) -> bool:
    """Whether the alert's bounding box overlaps the pasted region."""
    explanation = alert.get("explanation")
    if not isinstance(explanation, dict) or not isinstance(explanation.get("bbox"), dict):
        return False
    box = explanation["bbox"]
    return bool(mask[box["y0"] : box["y1"] + 1, box["x0"] : box["x1"] + 1].any())
