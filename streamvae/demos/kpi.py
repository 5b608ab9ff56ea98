"""``streamvae demo --kind kpi``: KPI series through the embedded broker with live alerts.

With ``nab_dir`` it streams real NAB series (their labelled windows score the alerts);
without, it makes seasonal KPI series with injected incidents (a spike, a level shift, a
dropout), because the NAB files cannot ship inside this Apache-2.0 package.

Each series' first ``history_fraction`` trains a window model (``streamvae train-kpi``'s
workflow, registered in MLflow); the rest is produced one point per message, keyed by
series, interleaved in time, and scored by the service: alerts, warm-up status and dead
letters come back from their topics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from streamvae.data.nab import load_nab
from streamvae.demos.harness import (
    DemoTopics,
    background_service,
    demo_tracking,
    embedded,
    linger,
    serve_settings,
)
from streamvae.stream.tools import produce_all, read_topic
from streamvae.training import TrainingCallback
from streamvae.types import InboundMessage, RunStats
from streamvae.workflows.kpi import KpiSettings, train_and_register

logger = logging.getLogger(__name__)

MODEL_NAME = "streamvae-demo-kpi"
TOPICS = DemoTopics.named("demo-kpi")
NAB_FILES = (
    "artificialWithAnomaly/art_daily_jumpsup.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv",
    "realKnownCause/machine_temperature_system_failure.csv",
)
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class KpiSeries:
    """One series to stream: timestamps, values and labelled anomaly windows (ms spans)."""

    name: str
    ts_ms: I64
    values: F64
    windows: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiDemoSettings:
    """Knobs of the KPI demo."""

    nab_dir: Path | None = None
    work_dir: Path | None = None
    history_fraction: float = 0.3
    max_points: int = 3000  # streamed per series (the rest of a long file is left out)
    window_len: int = 32
    model: str = "dcvae"
    epochs: int = 60
    percentile: float = 99.5
    seed: int = 0
    partitions: int = 2
    linger_s: float = 0.0


@dataclass(frozen=True, slots=True)
class KpiDemoReport:
    """What the KPI demo prints."""

    source: str
    series: int
    points: int
    scored: int
    warming_up: int
    alerts: int
    alerts_in_windows: int
    windows: int
    windows_detected: int
    dead_lettered: int
    throughput_pps: float
    model_uri: str
    metrics_url: str
    run: RunStats


def synthetic_series(seed: int = 0, n: int = 4032, interval_ms: int = 300_000) -> list[KpiSeries]:
    """Three seasonal KPIs (5-minute points, daily cycle) with one labelled incident each."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    ts = 1_700_000_000_000 + t * interval_ms
    day = 86_400_000 // interval_ms
    out = []
    for i, (name, level, amp) in enumerate(
        [("web.requests", 900.0, 300.0), ("web.latency_ms", 120.0, 25.0), ("db.cpu", 55.0, 12.0)]
    ):
        values = (
            level + amp * np.sin(2 * np.pi * (t - i * 20) / day) + 0.03 * amp * rng.normal(size=n)
        )
        start = int(n * (0.55 + 0.12 * i))
        if i == 0:
            values[start : start + 3] += 4 * amp  # a burst
        elif i == 1:
            values[start : start + 60] += 1.5 * amp  # a level shift for five hours
        else:
            values[start : start + 40] = level - 2.5 * amp  # a collapse
        # labelled: the incident and the window after it (every window that holds it)
        width = (60 if i == 1 else 40 if i == 2 else 3) + 32
        out.append(KpiSeries(name, ts, values, ((int(ts[start]), int(ts[start + width])),)))
    return out


def nab_series(root: Path) -> list[KpiSeries]:
    """The demo's NAB files (those present), as series named after the file."""
    present = {f.name: f for f in load_nab(root)}
    out = []
    for name in NAB_FILES:
        if name in present:
            f = present[name]
            ts = f.timestamps_ms
            spans = tuple((int(ts[a]), int(ts[b])) for a, b in f.windows)
            out.append(KpiSeries(Path(name).stem, ts, f.values, spans))
    return out


def _messages(
    series: list[KpiSeries], cut: dict[str, int], max_points: int
) -> list[tuple[int, bytes, bytes]]:
    items = []
    for s in series:
        start = cut[s.name]
        for t, v in zip(
            s.ts_ms[start : start + max_points].tolist(),
            s.values[start : start + max_points].tolist(),
            strict=True,
        ):
            items.append(
                (
                    int(t),
                    s.name.encode(),
                    orjson.dumps({"series": s.name, "ts": int(t), "value": float(v)}),
                )
            )
    items.sort(key=lambda item: item[0])  # interleaved in time, as live agents would send
    return items


def run_kpi_demo(
    cfg: KpiDemoSettings,
    callbacks: list[TrainingCallback] | None = None,
    say: Callable[[str], None] = logger.info,
) -> KpiDemoReport:
    """Train on each series' history, then stream the rest through the service."""
    series = nab_series(cfg.nab_dir) if cfg.nab_dir is not None else synthetic_series(cfg.seed)
    source = f"NAB ({cfg.nab_dir})" if cfg.nab_dir is not None else "synthetic KPIs"
    if not series:
        msg = f"none of the demo's NAB files {list(NAB_FILES)} is under {cfg.nab_dir}"
        raise ValueError(msg)
    with embedded("streamvae-demo-kpi", cfg.work_dir, say) as (bootstrap, work):
        return _run(cfg, series, source, work, bootstrap, callbacks or [], say)


def _run(
    cfg: KpiDemoSettings, series: list[KpiSeries], source: str, work: Path, bootstrap: str,
    callbacks: list[TrainingCallback], say: Callable[[str], None],
) -> KpiDemoReport:  # fmt: skip
    cut = {s.name: int(len(s.ts_ms) * cfg.history_fraction) for s in series}
    history = {s.name: (s.ts_ms[: cut[s.name]], s.values[: cut[s.name]]) for s in series}
    say(f"training {cfg.model} on the first {cfg.history_fraction:.0%} of {len(series)} "
        f"series from {source}")  # fmt: skip
    tracking = demo_tracking(work, MODEL_NAME, "demo-kpi")
    settings = KpiSettings(
        model=cfg.model, window_len=cfg.window_len, epochs=cfg.epochs, seed=cfg.seed,
        percentile=cfg.percentile, device="cpu",
    )  # fmt: skip
    outcome = train_and_register(history, settings, tracking, callbacks, log=say)
    say(f"registered {MODEL_NAME} v{outcome.version} as @champion")
    serve = serve_settings(bootstrap, TOPICS, tracking, partitions=cfg.partitions)
    items = _messages(series, cut, cfg.max_points)
    late = items[len(items) // 2]  # a repeated point: comes back as a dead letter
    with background_service(serve) as (service, stats):
        say(f"streaming {len(items)} points (one per message, keyed by series) "
            f"into {TOPICS.input!r}")  # fmt: skip
        started = time.monotonic()
        keys = [k for _, k, _ in items] + [late[1]]
        produce_all(
            bootstrap, TOPICS.input, [v for _, _, v in items] + [late[2]], key=lambda i: keys[i]
        )
        scores = read_topic(
            bootstrap, TOPICS.scores, partitions=cfg.partitions, expected=len(items), timeout_s=120
        )
        elapsed = time.monotonic() - started
        flagged = sum(
            b'"severity":"normal"' not in (m.value or b"")
            and b'"status":"scored"' in (m.value or b"")
            for m in scores
        )
        alerts = read_topic(
            bootstrap, TOPICS.alerts, partitions=cfg.partitions, expected=flagged, timeout_s=30
        )
        dead = read_topic(
            bootstrap, TOPICS.dead, partitions=cfg.partitions, expected=1, timeout_s=10
        )
        metrics_url = linger(service, cfg.linger_s, say)
    return _report(series, source, scores, alerts, dead, elapsed, serve.model_uri, metrics_url,
                   stats[0] if stats else RunStats())  # fmt: skip


def _report(
    series: list[KpiSeries], source: str, scores: list[InboundMessage],
    alerts: list[InboundMessage], dead: list[InboundMessage],
    elapsed: float, uri: str, metrics_url: str, run: RunStats,
) -> KpiDemoReport:  # fmt: skip
    records = [orjson.loads(m.value or b"{}") for m in scores]
    fired = [orjson.loads(m.value or b"{}") for m in alerts]
    spans = {s.name: s.windows for s in series}
    streamed_from: dict[str, int] = {}
    for r in records:
        streamed_from[r["series"]] = min(streamed_from.get(r["series"], r["ts"]), r["ts"])
    live_windows = [
        (name, a, b) for name, ws in spans.items() for a, b in ws
        if name in streamed_from and b >= streamed_from[name]
    ]  # fmt: skip

    def inside(alert: dict[str, Any]) -> tuple[str, int, int] | None:
        for name, a, b in live_windows:
            if alert["series"] == name and a <= alert["ts"] <= b:
                return (name, a, b)
        return None

    hit = {w for w in map(inside, fired) if w is not None}
    return KpiDemoReport(
        source=source, series=len(series), points=len(records),
        scored=sum(r["status"] == "scored" for r in records),
        warming_up=sum(r["status"] == "warming_up" for r in records),
        alerts=len(fired), alerts_in_windows=sum(inside(a) is not None for a in fired),
        windows=len(live_windows), windows_detected=len(hit), dead_lettered=len(dead),
        throughput_pps=len(records) / elapsed if elapsed > 0 else float("nan"),
        model_uri=uri, metrics_url=metrics_url, run=run,
    )  # fmt: skip
