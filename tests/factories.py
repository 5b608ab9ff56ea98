"""Builders shared by the tests: seeded data, small trained bundles, fakes behind the ports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

import numpy as np
import orjson
import polars as pl

from streamvae.bundle import ModelBundle, TabularPreprocess
from streamvae.data import FeatureSchema, StandardScaler
from streamvae.models import VAE, VAEConfig
from streamvae.thresholds import CalibrationSpec, calibrate_set
from streamvae.training import TrainConfig, fit
from streamvae.types import InboundMessage, OutboundMessage


def make_normal(n: int = 512, d: int = 6, seed: int = 0) -> np.ndarray:
    """Correlated Gaussian 'normal' data: d features driven by 2 latent factors plus noise."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 2))
    mixing = np.random.default_rng(1234).normal(size=(2, d))
    return (factors @ mixing + 0.1 * rng.normal(size=(n, d)) + 5.0).astype(np.float32)


def make_anomalies(n: int = 64, d: int = 6, seed: int = 1) -> np.ndarray:
    """Rows that break the normal correlation structure (independent, wider noise)."""
    rng = np.random.default_rng(seed)
    return (rng.normal(scale=3.0, size=(n, d)) + 5.0).astype(np.float32)


def feature_names(d: int) -> tuple[str, ...]:
    return tuple(f"x{i}" for i in range(d))


CHANNELS = ("app", "pos", "web")


def make_contextual(
    n: int = 600, d: int = 6, seed: int = 0, *, swap_context: bool = False
) -> tuple[np.ndarray, pl.DataFrame]:
    """Rows whose level depends on their context (channel shifts them, hour bends them).

    With ``swap_context`` each row is paired with another channel's context: every row is
    then a *contextual* anomaly (normal for some context, not for the one it claims).
    """
    rng = np.random.default_rng(seed)
    base = make_normal(n, d, seed)
    channel = rng.integers(0, len(CHANNELS), size=n)
    hour = rng.integers(0, 24, size=n)
    offsets = np.array([-4.0, 0.0, 4.0])[:, None] * np.linspace(1.0, -1.0, d)[None, :]
    bend = np.sin(2 * np.pi * hour / 24.0)[:, None] * np.linspace(0.0, 2.0, d)[None, :]
    x = (base + offsets[channel] + bend).astype(np.float32)
    claimed = (channel + rng.integers(1, len(CHANNELS), size=n)) % 3 if swap_context else channel
    frame = pl.DataFrame({"hour": hour, "channel": [CHANNELS[c] for c in claimed]})
    return x, frame


def make_bundle(
    d: int = 6,
    *,
    seed: int = 0,
    epochs: int = 30,
    calibrated: bool = True,
    percentile: float = 99.0,
    model_key: str = "vae",
    fused: bool = False,
) -> ModelBundle:
    """A small VAE trained on ``make_normal`` (a couple of seconds on CPU).

    With ``fused`` it scores the ``fused`` score (neighbour index on its training rows, the
    tails fitted on its early-stopping rows), as the shipped tabular default does.
    """
    x = make_normal(600, d, seed)
    train, cal = x[:500], x[500:]
    scaler = StandardScaler.fit(train)
    config = VAEConfig(input_dim=d, latent_dim=2, hidden_dims=(16,))
    model, result = fit(
        lambda: VAE(config),
        scaler.transform(train),
        TrainConfig(epochs=epochs, patience=0, seed=seed, device="cpu", batch_size=64),
    )
    bundle = ModelBundle(
        model_key=model_key,
        model_config=asdict(config),
        state_dict=model.state_dict(),
        preprocess=TabularPreprocess(FeatureSchema(feature_names(d)), scaler),
    )
    from streamvae.bundle import TabularDetector
    from streamvae.bundle.fusion import with_fusion

    if fused:
        bundle = with_fusion(
            bundle, train, result.val_rows, score_kind="fused", k=1, max_rows=10_000, seed=seed
        )
    if not calibrated:
        return bundle

    detector = TabularDetector(bundle)
    scores = detector.select(detector.score(cal))
    spec = CalibrationSpec(percentile=percentile)
    thresholds, _ = calibrate_set(scores, spec, score_kind=bundle.score_kind)
    return bundle.with_threshold(thresholds)


def feature_message(
    values: np.ndarray, *, rid: str = "r", ts: int = 1_000, as_list: bool = False
) -> dict[str, object]:
    names = feature_names(values.shape[0])
    features: object = (
        values.tolist() if as_list else dict(zip(names, values.tolist(), strict=True))
    )
    return {"id": rid, "ts": ts, "features": features}


def inbound(
    values: list[bytes | None], *, topic: str = "in", partition: int = 0, start: int = 0
) -> list[InboundMessage]:
    return [
        InboundMessage(topic, partition, start + i, v, None, 1_000) for i, v in enumerate(values)
    ]


def encode(obj: object) -> bytes:
    return orjson.dumps(obj)


class FakeSource:
    """An in-memory MessageSource: serves pre-loaded messages, records commits."""

    def __init__(self, messages: list[InboundMessage], batch: int = 10) -> None:
        self.messages = list(messages)
        self.batch = batch
        self.position = 0
        self.marked: dict[tuple[str, int], int] = {}
        self.committed: dict[tuple[str, int], int] = {}
        self.commits = 0

    def poll(self, timeout_ms: int, max_records: int | None = None) -> list[InboundMessage]:
        limit = min(self.batch, max_records or self.batch)
        out = self.messages[self.position : self.position + limit]
        self.position += len(out)
        return out

    def mark_processed(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.marked.update(offsets)

    def commit(self) -> None:
        self.commits += 1
        self.committed.update(self.marked)

    def lag(self) -> dict[tuple[str, int], int]:
        return {}


class ListSink:
    """An in-memory MessageSink; ``fail_on_flush`` simulates an undeliverable batch."""

    def __init__(self, fail_on_flush: int | None = None) -> None:
        self.sent: list[OutboundMessage] = []
        self.flushed: list[OutboundMessage] = []
        self.flushes = 0
        self.fail_on_flush = fail_on_flush

    def send(self, message: OutboundMessage) -> None:
        self.sent.append(message)

    def flush(self) -> None:
        self.flushes += 1
        if self.fail_on_flush is not None and self.flushes >= self.fail_on_flush:
            raise ConnectionError("broker unavailable")
        self.flushed = list(self.sent)

    def on(self, topic: str) -> list[OutboundMessage]:
        return [m for m in self.flushed if m.topic == topic]


KPI_SERIES = {"cpu.web-1": (50.0, 10.0), "cpu.web-2": (40.0, 8.0), "mem.db-1": (70.0, 5.0)}
KPI_INTERVAL_MS = 60_000
KPI_PERIOD = 60  # points per cycle


def kpi_values(series: str, start: int, n: int, seed: int = 0) -> np.ndarray:
    """Points ``start .. start + n - 1`` of a synthetic seasonal KPI (level, amplitude, noise)."""
    level, amplitude = KPI_SERIES[series]
    t = np.arange(start, start + n)
    rng = np.random.default_rng([seed, start, sum(map(ord, series))])
    return (
        level
        + amplitude * np.sin(2 * np.pi * t / KPI_PERIOD)
        + 0.02 * amplitude * rng.normal(size=n)
    )


def make_kpi_history(n: int = 1200, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``series -> (ts_ms, values)`` of every synthetic series, ``n`` points each."""
    ts = np.arange(n, dtype=np.int64) * KPI_INTERVAL_MS
    return {s: (ts, kpi_values(s, 0, n, seed)) for s in KPI_SERIES}


def make_kpi_bundle(
    window_len: int = 16, epochs: int = 40, seed: int = 0, score_kind: str = "last_point"
) -> ModelBundle:
    """A calibrated KPI window bundle trained on :func:`make_kpi_history` (a few seconds).

    ``last_point`` by default: a point scores as soon as its window is full, which the
    window-state tests rely on; the ``stream`` default of ``train-kpi`` has its own tests.
    """
    from streamvae.workflows.kpi import KpiSettings, train_kpi

    settings = KpiSettings(
        model="vae", window_len=window_len, epochs=epochs, seed=seed, device="cpu",
        percentile=99.0, threshold_by="series", score_kind=score_kind,  # type: ignore[arg-type]
    )  # fmt: skip
    return train_kpi(make_kpi_history(seed=seed), settings)


def kpi_point(series: str, index: int, value: float) -> bytes:
    """One KPI message value (point ``index`` of the synthetic time axis)."""
    return orjson.dumps({"series": series, "ts": index * KPI_INTERVAL_MS, "value": float(value)})


def digit_split(size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The built-in digits shuffled (seed 0): 1,200 to train on, 597 held out."""
    from streamvae.data.images import builtin_digits

    images, _ = builtin_digits(size)
    order = np.random.default_rng(0).permutation(len(images))
    return images[order[:1200]], images[order[1200:]]


def make_image_bundle(size: int = 16, epochs: int = 40, seed: int = 0) -> ModelBundle:
    """A small calibrated conv2d_vae on the built-in digits (seconds on CPU)."""
    from streamvae.workflows.images import ImageSettings, train_images

    train, _ = digit_split(size)
    settings = ImageSettings(
        latent_dim=16, channels=(16, 32), epochs=epochs, learning_rate=3e-3, seed=seed,
        device="cpu", percentile=99.0, learn_variance=True,
    )  # fmt: skip
    return train_images(train, settings)
