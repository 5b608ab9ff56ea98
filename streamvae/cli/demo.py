"""``streamvae demo``: the whole path on embedded parts, for each input kind."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamvae.cli.common import (
    JsonOpt,
    ProgressBar,
    app,
    emit,
    err_console,
    fail,
    guard,
)


@app.command()
def demo(
    kind: Annotated[
        str,
        typer.Option(
            help="tabular (cardio records), kpi (KPI series, one point per message) or images "
            "(digit batches as .npy)."
        ),
    ] = "tabular",
    nab: Annotated[
        Path | None,
        typer.Option(help="With --kind kpi: stream real NAB series from this NAB directory."),
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="Keep the MLflow store here (default: a temporary dir).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, training and replay order.")] = 0,
    beta: Annotated[float, typer.Option(min=0.0, help="KL weight of the beta-VAE.")] = 1.0,
    percentile: Annotated[float, typer.Option(help="Calibration percentile.")] = 99.0,
    linger: Annotated[
        float, typer.Option(min=0.0, help="Keep /metrics up this many seconds at the end.")
    ] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Run everything on embedded parts: broker, MLflow store, training, calibration, serving, replay.

    Example: streamvae demo --linger 60
    Example: streamvae demo --kind kpi --nab ../NAB
    """
    if kind not in ("tabular", "kpi", "images"):
        fail(f"bad --kind {kind!r}: use tabular, kpi or images")
    if nab is not None and kind != "kpi":
        fail("--nab goes with --kind kpi")
    if kind == "kpi":
        _demo_kpi(nab, work_dir, seed, 99.5 if percentile == 99.0 else percentile, linger, as_json)
        return
    if kind == "images":
        _demo_images(work_dir, seed, percentile, linger, as_json)
        return
    if not 0.0 < percentile < 100.0:
        fail(f"bad --percentile {percentile}: must be strictly between 0 and 100")
    from streamvae.demos.tabular import DemoSettings, run_demo

    cfg = DemoSettings(
        work_dir=work_dir, seed=seed, beta=beta, percentile=percentile, linger_s=linger
    )
    report = guard(
        lambda: run_demo(cfg, [ProgressBar()], lambda line: err_console.print(f"- {line}"))
    )
    emit(
        "streamvae demo: cardio (ADBench), held-out normals + anomalies streamed through Kafka",
        {
            "model": f"{report.model_uri} (v{report.version})",
            "threshold (99th pct of held-out normals)"
            if percentile == 99.0
            else "threshold": report.threshold,
            "records streamed": report.records,
            "records scored": report.scored,
            "malformed messages dead-lettered": report.run.dead_lettered,
            "alerts": report.alerts,
            "precision": report.precision,
            "recall": report.recall,
            "AUROC of streamed scores": report.auroc,
            "throughput (records/s)": round(report.throughput_rps, 1),
            "end-to-end latency p50 / p99 (ms)": f"{report.latency_p50_ms:.1f} / {report.latency_p99_ms:.1f}",
            "training time (s)": round(report.train_s, 1),
            "metrics URL (live while the demo runs)": report.metrics_url,
        },
        as_json=as_json,
    )


def _demo_images(
    work_dir: Path | None, seed: int, percentile: float, linger: float, as_json: bool
) -> None:
    if not 0.0 < percentile < 100.0:
        fail(f"bad --percentile {percentile}: must be strictly between 0 and 100")
    from streamvae.demos.images import ImageDemoSettings, run_image_demo

    cfg = ImageDemoSettings(work_dir=work_dir, seed=seed, percentile=percentile, linger_s=linger)
    report = guard(
        lambda: run_image_demo(cfg, [ProgressBar()], lambda line: err_console.print(f"- {line}"))
    )
    emit(
        "streamvae demo: digit images with pasted anomalies, .npy batches through Kafka",
        {
            "model": report.model_uri,
            "images streamed / with a pasted anomaly": f"{report.images} / {report.anomalies}",
            "images scored": report.scored,
            "alerts (on corrupted images)": f"{report.alerts} ({report.true_alerts})",
            "alert boxes on the pasted region": report.boxes_on_target,
            "AUROC of streamed image scores": round(report.auroc, 3),
            "dead letters (a NaN image, a bad batch)": report.dead_lettered,
            "throughput (images/s, maps on)": round(report.throughput_ips, 1),
            "training time (s)": round(report.train_s, 1),
            "metrics URL (live while the demo runs)": report.metrics_url,
        },
        as_json=as_json,
    )


def _demo_kpi(
    nab: Path | None, work_dir: Path | None, seed: int, percentile: float, linger: float,
    as_json: bool,
) -> None:  # fmt: skip
    if not 0.0 < percentile < 100.0:
        fail(f"bad --percentile {percentile}: must be strictly between 0 and 100")
    from streamvae.demos.kpi import KpiDemoSettings, run_kpi_demo

    cfg = KpiDemoSettings(
        nab_dir=nab, work_dir=work_dir, seed=seed, percentile=percentile, linger_s=linger
    )
    report = guard(
        lambda: run_kpi_demo(cfg, [ProgressBar()], lambda line: err_console.print(f"- {line}"))
    )
    emit(
        f"streamvae demo --kind kpi: {report.source} streamed through Kafka",
        {
            "model": report.model_uri,
            "series / points streamed": f"{report.series} / {report.points}",
            "points scored / warming up": f"{report.scored} / {report.warming_up}",
            "alerts (inside labelled windows)": f"{report.alerts} ({report.alerts_in_windows})",
            "labelled windows detected": f"{report.windows_detected} of {report.windows}",
            "dead letters (a repeated point)": report.dead_lettered,
            "throughput (points/s)": round(report.throughput_pps, 1),
            "metrics URL (live while the demo runs)": report.metrics_url,
        },
        as_json=as_json,
    )
