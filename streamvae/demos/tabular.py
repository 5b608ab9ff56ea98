"""``streamvae demo``: the whole path on embedded parts, from training to alerts, with a report."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from streamvae.config import TrainSettings
from streamvae.data import Table, load_builtin, novelty_split
from streamvae.demos.harness import (
    DemoTopics,
    background_service,
    demo_tracking,
    embedded,
    linger,
    serve_settings,
)
from streamvae.scoring import roc_auc
from streamvae.stream.tools import produce_all, read_topic
from streamvae.tracking import TrainOutcome
from streamvae.training import TrainingCallback
from streamvae.types import InboundMessage, RunStats
from streamvae.workflows.train import train

logger = logging.getLogger(__name__)

MODEL_NAME = "streamvae-demo"
TOPICS = DemoTopics.named("demo-features")
BAD_MESSAGES = (
    b"{not json",
    b'{"id": "bad-1", "features": {"f00": 1.0}}',
    b'{"id": "bad-2", "features": NaN}',
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSettings:
    """Knobs of the demo (the defaults finish in well under 3 minutes on 2 cores)."""

    work_dir: Path | None = None
    percentile: float = 99.0
    beta: float = 1.0
    epochs: int | None = None  # the shipped automatic budget
    seed: int = 0
    partitions: int = 3
    metrics_port: int = 0
    linger_s: float = 0.0


@dataclass(frozen=True, slots=True)
class DemoReport:
    """The figures the demo prints."""

    model_uri: str
    version: str
    threshold: float
    records: int
    scored: int
    alerts: int
    precision: float
    recall: float
    auroc: float
    throughput_rps: float
    latency_p50_ms: float
    latency_p99_ms: float
    train_s: float
    metrics_url: str
    work_dir: str
    run: RunStats


def _train(
    normals: Table, cfg: DemoSettings, work: Path, callbacks: list[TrainingCallback]
) -> TrainOutcome:
    settings = TrainSettings.model_validate(
        {
            "data": {"builtin": "cardio", "calibration_fraction": 0.25, "seed": cfg.seed},
            "model": {"beta": cfg.beta},
            "training": {"epochs": cfg.epochs, "seed": cfg.seed},
            "calibration": {"percentile": cfg.percentile},
            "tracking": demo_tracking(work, MODEL_NAME, "streamvae-demo").model_dump(),
        }
    )  # fmt: skip
    return train(settings, callbacks, normals)


def _records(test: Table, seed: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Shuffled held-out records as messages, and their labels by id."""
    labels: dict[str, int] = {}
    records = []
    for i in random.Random(seed).sample(range(len(test)), len(test)):
        rid = f"cardio-{i}"
        labels[rid] = 0 if test.labels is None else int(test.labels[i])
        records.append(
            {"id": rid, "features": dict(zip(test.names, test.features[i].tolist(), strict=True))}
        )
    return records, labels


def _stamped(records: list[dict[str, Any]]) -> Iterator[bytes]:
    """Each record with ``ts`` = the moment it is sent (for end-to-end latency)."""
    for record in records:
        yield orjson.dumps(record | {"ts": time.time_ns() // 1_000_000})
    yield from BAD_MESSAGES


def run_demo(
    cfg: DemoSettings,
    callbacks: list[TrainingCallback] | None = None,
    say: Callable[[str], None] = logger.info,
) -> DemoReport:
    """Train, calibrate, register, serve and replay held-out records; report the results."""
    with embedded("streamvae-demo", cfg.work_dir, say) as (bootstrap, work):
        return _run(cfg, work, bootstrap, callbacks or [], say)


def _run(
    cfg: DemoSettings, work: Path, bootstrap: str, callbacks: list[TrainingCallback],
    say: Callable[[str], None],
) -> DemoReport:  # fmt: skip
    table = load_builtin("cardio")
    labels_all = table.labels if table.labels is not None else np.zeros(len(table), np.int8)
    split = novelty_split(labels_all, seed=cfg.seed, train_fraction=0.6, calibration_fraction=0.2)
    normals = table.subset(np.concatenate([split.train, split.calibration]))
    say(f"training a beta-VAE (beta={cfg.beta}) on {len(normals)} normal cardio records")
    outcome = _train(normals, cfg, work, callbacks)
    threshold = outcome.threshold.default.value if outcome.threshold else float("nan")
    say(f"registered {MODEL_NAME} v{outcome.version} as @champion, threshold {threshold:.3f}")
    tracking = demo_tracking(work, MODEL_NAME, "streamvae-demo")
    serve = serve_settings(bootstrap, TOPICS, tracking, partitions=cfg.partitions)
    if cfg.metrics_port:
        serve = serve.model_copy(update={"metrics_port": cfg.metrics_port})
    records, labels = _records(table.subset(split.test), cfg.seed)
    with background_service(serve) as (service, stats):
        say(f"replaying {len(records)} held-out records ({sum(labels.values())} anomalies) "
            f"and {len(BAD_MESSAGES)} malformed messages into {TOPICS.input!r}")  # fmt: skip
        produce_all(bootstrap, TOPICS.input, _stamped(records))
        scores = read_topic(
            bootstrap, TOPICS.scores, partitions=cfg.partitions, expected=len(records), timeout_s=60
        )
        n_flagged = sum(b'"severity":"normal"' not in (m.value or b"") for m in scores)
        alerts = read_topic(
            bootstrap, TOPICS.alerts, partitions=cfg.partitions, expected=n_flagged, timeout_s=30
        )
        metrics_url = linger(service, cfg.linger_s, say)
    return _report(outcome, serve.model_uri, scores, alerts, labels,
                   stats[0] if stats else RunStats(), metrics_url, work)  # fmt: skip


def _report(
    outcome: TrainOutcome, uri: str, messages: list[InboundMessage], alerts: list[InboundMessage],
    labels: dict[str, int], run: RunStats, metrics_url: str, work: Path,
) -> DemoReport:  # fmt: skip
    """Quality from the alert topic; AUROC and latency from every streamed score."""
    scores = [orjson.loads(m.value or b"{}") for m in messages]
    alerted = {orjson.loads(m.value or b"{}")["id"] for m in alerts}
    produced_ms = np.array([m.timestamp_ms or 0 for m in messages], dtype=np.float64)
    y = np.array([labels[s["id"]] for s in scores], dtype=np.int8)
    score = np.array([s["score"] for s in scores])
    flagged = np.array([s["id"] in alerted for s in scores], dtype=bool)
    event_ms = np.array([s["ts"] for s in scores], dtype=np.float64)
    latency_ms = produced_ms - event_ms
    tp, n_pos = int(np.sum(flagged & (y == 1))), int(np.sum(y == 1))
    span_s = (produced_ms.max() - event_ms.min()) / 1000.0 if scores else 0.0
    nan = float("nan")
    return DemoReport(
        model_uri=uri, version=outcome.version or "",
        threshold=outcome.threshold.default.value if outcome.threshold else nan,
        records=len(labels), scored=len(scores), alerts=len(alerts),
        precision=tp / flagged.sum() if flagged.any() else nan,
        recall=tp / n_pos if n_pos else nan,
        auroc=roc_auc(y, score) if scores else nan,
        throughput_rps=len(scores) / span_s if span_s > 0 else nan,
        latency_p50_ms=float(np.percentile(latency_ms, 50)) if scores else nan,
        latency_p99_ms=float(np.percentile(latency_ms, 99)) if scores else nan,
        train_s=outcome.seconds, metrics_url=metrics_url, work_dir=str(work), run=run,
    )  # fmt: skip
