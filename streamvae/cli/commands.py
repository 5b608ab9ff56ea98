"""Commands: train, evaluate, diagnose, promote, serve, demo (calibration lives in ``calibration``)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from streamvae.cli.common import (
    ConfigOpt,
    DeviceOpt,
    JsonOpt,
    NewAliasOpt,
    ProgressBar,
    QuietOpt,
    SeedOpt,
    SetOpt,
    TrackingOpt,
    WorkDirOpt,
    app,
    check_device,
    console,
    emit,
    err_console,
    fail,
    fit_facts,
    guard,
    need_path,
    need_uri,
    print_table,
    setup_logging,
    tracking_settings,
)
from streamvae.config import ServeSettings, TrainSettings, load_settings, unknown_model_message
from streamvae.types import IMAGE_MODELS, KPI_MODELS


@app.command()
def train(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data: Annotated[
        Path | None, typer.Option(help="Training data (CSV, Parquet or NPZ); overrides data.path.")
    ] = None,
    alias: NewAliasOpt = None,
    tracking_uri: TrackingOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a VAE on normal data, calibrate its threshold on held-out normals, register it.

    Example: streamvae train -c configs/tabular.yaml --data normal.csv --set training.epochs=50 --alias champion
    """
    extra: dict[str, Any] = {}
    if data is not None:
        extra["data"] = {"path": str(data)}
    tracking: dict[str, Any] = {}
    if alias is not None:
        tracking["alias"] = alias
    if tracking_uri is not None:
        tracking["tracking_uri"] = tracking_uri
    if tracking:
        extra["tracking"] = tracking
    options = {"data.path": "--data", "tracking.alias": "--alias"}
    options["tracking.tracking_uri"] = "--tracking-uri"
    settings = guard(lambda: load_settings(TrainSettings, config, set_ or [], extra, options))
    if settings.data.path is not None:
        need_path(settings.data.path, "data file")
    from streamvae.workflows.train import train as run_train

    outcome = guard(lambda: run_train(settings, [] if quiet or as_json else [ProgressBar()]))
    thr = outcome.threshold.default if outcome.threshold else None
    emit(
        "trained",
        {
            "run id": outcome.run_id,
            "model": f"{outcome.registered_model} v{outcome.version}"
            if outcome.version
            else outcome.model_uri,
            "alias": outcome.alias or "-",
            **fit_facts(outcome.fit),
            "train / calibration rows": f"{outcome.n_train} / {outcome.n_calibration}",
            "threshold": thr.value if thr else "not calibrated (no held-out rows)",
            "expected alerts per 1,000 normal": 1000 * thr.expected_alert_rate if thr else "-",
            "tracking uri": outcome.tracking_uri,
            "calibration report": outcome.report or "-",
            "seconds": round(outcome.seconds, 1),
        },
        as_json=as_json,
    )


@app.command("train-kpi")
def train_kpi(
    data: Annotated[Path, typer.Argument(help="KPI history, one row per point (CSV or Parquet).")],
    series_column: Annotated[str, typer.Option(help="Series id column.")] = "series",
    ts_column: Annotated[
        str, typer.Option(help="Timestamp column (epoch ms or date-time text).")
    ] = "timestamp",
    value_column: Annotated[str, typer.Option(help="Value column.")] = "value",
    model: Annotated[
        str, typer.Option(help="Window model: vae, conv1d_vae; calendar: cvae, dcvae, conv1d_cvae.")
    ] = "vae",
    window_len: Annotated[int, typer.Option(min=2, help="Points per window.")] = 32,
    interval_s: Annotated[
        float | None, typer.Option(help="Sampling interval (default: the data's median gap).")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Epoch budget (early stopping).")] = 100,
    percentile: Annotated[float, typer.Option(help="Calibration percentile per threshold.")] = 99.5,
    threshold_by: Annotated[
        str, typer.Option(help="series, group (id up to the first '.') or all.")
    ] = "series",
    calibration_fraction: Annotated[
        float, typer.Option(help="Newest share of each series held out to calibrate.")
    ] = 0.2,
    score_kind: Annotated[
        str,
        typer.Option(
            help="stream (default: residual and window novelty as tail surprises against each "
            "series' own history, one score per incident), last_point or window_neg_elbo."
        ),
    ] = "stream",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    registered_model: Annotated[
        str, typer.Option(help="MLflow registered model name.")
    ] = "streamvae-kpi",
    alias: NewAliasOpt = None,
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a KPI window model on many series, calibrate per-series thresholds, register it.

    Example: streamvae train-kpi kpi_history.parquet --model dcvae --window-len 32 --alias champion
    """
    need_path(data, "KPI history")
    if model not in KPI_MODELS:
        fail(unknown_model_message(model, "KPI", KPI_MODELS))
    from streamvae.workflows.kpi import KpiSettings, read_series, train_and_register

    try:
        settings = KpiSettings(
            model=model,
            window_len=window_len,
            interval_ms=None if interval_s is None else round(interval_s * 1000),
            epochs=epochs,
            percentile=percentile,
            threshold_by=threshold_by,  # type: ignore[arg-type]
            calibration_fraction=calibration_fraction,
            score_kind=score_kind,  # type: ignore[arg-type]
            seed=seed,
            device=device,  # type: ignore[arg-type]
        )
    except (KeyError, ValueError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
        return
    check_device(device)
    history = guard(
        lambda: read_series(
            data, series_column=series_column, ts_column=ts_column, value_column=value_column
        )
    )
    tracking = tracking_settings(tracking_uri, work_dir).model_copy(
        update={"registered_model": registered_model, "alias": alias}
    )
    outcome = guard(
        lambda: train_and_register(
            history,
            settings,
            tracking,
            [] if quiet or as_json else [ProgressBar()],
            log=lambda line: err_console.print(f"- {line}"),
        )
    )
    thresholds = outcome.bundle.threshold
    emit(
        "trained (KPI)",
        {
            "run id": outcome.run_id,
            "model": f"{outcome.registered_model} v{outcome.version}"
            if outcome.version
            else outcome.model_uri,
            "alias": outcome.alias or "-",
            "series": outcome.bundle.meta["series"],
            "train / calibration windows": f"{outcome.bundle.meta['train_windows']} / "
            f"{outcome.bundle.meta['calibration_windows']}",
            "thresholds": "-"
            if thresholds is None
            else f"{len(thresholds.segments)} per {thresholds.segment_field or 'all'} "
            f"+ default {thresholds.default.value:.4g}",
            "tracking uri": outcome.tracking_uri,
            "calibration report": outcome.report or "-",
            "seconds": round(outcome.seconds, 1),
        },
        as_json=as_json,
    )


@app.command("train-images")
def train_images(
    data: Annotated[
        Path, typer.Argument(help="Normal images: .npy / .npz (N, C, H, W) or a PNG folder.")
    ],
    model: Annotated[
        str, typer.Option(help="conv2d_vae (fully convolutional) or conv2d_vae_stem.")
    ] = "conv2d_vae",
    latent_dim: Annotated[int, typer.Option(min=1, help="Latent size.")] = 32,
    beta: Annotated[float, typer.Option(min=0.0, help="KL weight (beta-VAE above 1).")] = 1.0,
    width: Annotated[float, typer.Option(min=0.01, help="Capacity: scales every map.")] = 1.0,
    learn_variance: Annotated[
        bool,
        typer.Option("--learn-variance/--fixed-variance", help="Train the decoder variance gamma."),
    ] = True,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Epoch limit (early stopping); unset: automatic, 50 epochs raised to "
            "1,500 optimiser steps on a small set.",
        ),
    ] = None,
    percentile: Annotated[
        float, typer.Option(help="Calibration percentile of image scores.")
    ] = 99.0,
    score_kind: Annotated[
        str,
        typer.Option(
            help="fused (negative ELBO + pixel distance to the nearest normal image), "
            "neg_elbo, recon_error, kl, bpd, neighbour, ..."
        ),
    ] = "fused",
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    registered_model: Annotated[
        str, typer.Option(help="MLflow registered model name.")
    ] = "streamvae-images",
    alias: NewAliasOpt = None,
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a convolutional VAE on normal images, calibrate image and pixel thresholds, register.

    Example: streamvae train-images normal.npz --model conv2d_vae --latent-dim 64 --alias champion
    """
    need_path(data, "image data")
    if model not in IMAGE_MODELS:
        fail(unknown_model_message(model, "image", IMAGE_MODELS))
    check_device(device)
    from streamvae.bundle.image import ImagePreprocess
    from streamvae.data.images import load_images
    from streamvae.workflows.images import ImageSettings, train_and_register

    try:
        settings = ImageSettings(
            model=model, latent_dim=latent_dim, beta=beta, width=width,
            learn_variance=learn_variance, epochs=epochs, percentile=percentile,
            score_kind=score_kind, seed=seed, device=device,  # type: ignore[arg-type]
        )  # fmt: skip
    except (KeyError, ValueError) as exc:
        fail(str(exc.args[0]) if exc.args else str(exc))
        return
    images, _ = guard(lambda: load_images(data))
    tracking = tracking_settings(tracking_uri, work_dir).model_copy(
        update={"registered_model": registered_model, "alias": alias}
    )
    outcome = guard(
        lambda: train_and_register(
            images, settings, tracking, [] if quiet or as_json else [ProgressBar()],
            log=lambda line: err_console.print(f"- {line}"),
        )
    )  # fmt: skip
    thresholds = outcome.bundle.threshold
    preprocess = outcome.bundle.preprocess
    pixel = preprocess.pixel_thresholds if isinstance(preprocess, ImagePreprocess) else {}
    emit(
        "trained (images)",
        {
            "run id": outcome.run_id,
            "model": f"{outcome.registered_model} v{outcome.version}"
            if outcome.version
            else outcome.model_uri,
            "alias": outcome.alias or "-",
            "images (C, H, W)": f"{len(images)} x {tuple(images.shape[1:])}",
            "train / calibration": f"{outcome.bundle.meta['train_images']} / "
            f"{outcome.bundle.meta['calibration_images']}",
            "epochs run": outcome.bundle.meta.get("epochs_run", "-"),
            "score": outcome.bundle.score_kind,
            "threshold": "-" if thresholds is None else f"{thresholds.default.value:.4g}",
            "pixel thresholds": ", ".join(f"{k} {v:.3g}" for k, v in pixel.items()),
            "tracking uri": outcome.tracking_uri,
            "calibration report": outcome.report or "-",
            "seconds": round(outcome.seconds, 1),
        },
        as_json=as_json,
    )


@app.command()
def evaluate(
    model_uri: Annotated[
        str | None,
        typer.Argument(
            help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID or a bundle dir "
            "(not with --nab)."
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Argument(
            help="Labelled data: CSV/Parquet with a label column, or NPZ with 'y'; for an "
            "image model an NPZ (X, y, optional masks) or a folder of label folders "
            "(good/ + one per anomaly type, masks in ground_truth/)."
        ),
    ] = None,
    label_column: Annotated[str, typer.Option(help="Label column (1 = anomaly).")] = "label",
    normal_label: Annotated[
        int | None,
        typer.Option(
            help="Image labels: the label of the normal class, every other is an anomaly "
            "(unset: labels are 0 normal / 1 anomaly)."
        ),
    ] = None,
    nab: Annotated[
        Path | None,
        typer.Option(
            help="Run the Numenta Anomaly Benchmark on this corpus directory instead "
            "(data/ + labels/combined_windows.json, or CSVs + windows.json)."
        ),
    ] = None,
    write_results: Annotated[
        Path | None,
        typer.Option(help="With --nab: write per-point scores in NAB's results layout here."),
    ] = None,
    nab_model: Annotated[
        str, typer.Option(help="With --nab: window model family (dcvae reads the calendar).")
    ] = "dcvae",
    window_len: Annotated[int, typer.Option(min=2, help="With --nab: points per window.")] = 32,
    ensemble: Annotated[
        int, typer.Option(min=1, help="With --nab: models whose residuals are averaged per file.")
    ] = 1,
    epochs: Annotated[int, typer.Option(min=1, help="With --nab: training epochs.")] = 100,
    seed: Annotated[int, typer.Option(help="With --nab: seed of the first model.")] = 0,
    diagnose_nab: Annotated[
        bool,
        typer.Option(
            "--diagnose",
            help="With --nab: per file, the fused score inside vs outside the windows, where "
            "in each window the first detection fell, and the false positives.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
) -> None:
    """Score labelled data and print AUROC, average precision and precision/recall/F1 at the threshold; or, with --nab, run NAB.

    An image model scores labelled images the same way and, when masks come with them,
    also prints the pixel AUROC of its rec_error map and pixel precision/recall at the
    calibrated pixel threshold.

    With --nab each file is streamed in order: a window model learns from the probationary
    first 15 %, then every point is scored online against what its series has shown so far
    (the model's residual and the window's novelty, as tail surprises); the three NAB
    profile scores are printed per file and overall (thresholds optimised over the corpus,
    as NAB does). --diagnose adds a per-file diagnosis.

    Example: streamvae evaluate models:/streamvae-tabular@champion labelled.parquet
    Example: streamvae evaluate models:/streamvae-images@champion digits.npz --normal-label 3
    Example: streamvae evaluate --nab ../NAB --write-results nab-results
    """
    if nab is not None:
        if model_uri is not None or data is not None:
            fail("--nab trains one model per file: give no MODEL_URI or DATA with it")
        _evaluate_nab(
            nab, write_results, nab_model, window_len, ensemble, epochs, seed, diagnose_nab,
            as_json,
        )  # fmt: skip
        return
    if model_uri is None or data is None:
        fail("evaluate needs MODEL_URI and DATA (or --nab DIR)")
        return
    need_uri(model_uri)
    need_path(data, "data")
    from streamvae.workflows.offline import evaluate as run_evaluate

    uri, path = model_uri, data
    result = guard(
        lambda: run_evaluate(
            uri,
            path,
            tracking=tracking_settings(tracking_uri, work_dir),
            label_column=label_column,
            normal_label=normal_label,
        )
    )
    values = result.to_dict()
    if as_json:
        console.print_json(json.dumps(values, default=str))
    else:
        print_table("evaluation", values)


def _evaluate_nab(
    root: Path,
    write_results: Path | None,
    model: str,
    window_len: int,
    ensemble: int,
    epochs: int,
    seed: int,
    diagnosis: bool,
    as_json: bool,
) -> None:
    from streamvae.data.nab import load_nab
    from streamvae.models import MODEL_REGISTRY
    from streamvae.workflows.nab import (
        NabSettings,
        diagnose,
        evaluate_nab,
        format_diagnosis,
        format_report,
        report_dict,
    )
    from streamvae.workflows.nab import write_results as write_nab_results

    if model not in MODEL_REGISTRY:
        fail(f"bad --nab-model {model!r}: use one of {sorted(MODEL_REGISTRY)}")
    settings = NabSettings(
        model=model, window_len=window_len, ensemble=ensemble, epochs=epochs, seed=seed
    )
    files = guard(lambda: load_nab(root))
    report = evaluate_nab(
        files,
        settings,
        lambda r: err_console.print(
            f"- {r.file.name}: {len(r.file)} points, window {r.window_len}"
        ),
    )
    if write_results is not None:
        written = write_nab_results(report, write_results)
        err_console.print(f"- wrote {len(written)} result file(s) under {write_results}")
    diagnoses = diagnose(report) if diagnosis else []
    if as_json:
        values = report_dict(report)
        if diagnosis:
            values["diagnosis"] = {d.name: asdict(d) for d in diagnoses}
        console.print_json(json.dumps(values))
    else:
        console.print(format_report(report), highlight=False, soft_wrap=True)
        if diagnosis:
            threshold = report.profiles["standard"].threshold
            text = format_diagnosis(diagnoses, threshold)
            console.print(text, highlight=False, soft_wrap=True)


@app.command()
def diagnose(
    model_uri: Annotated[
        str,
        typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID or a bundle dir."),
    ],
    data: Annotated[
        Path,
        typer.Argument(
            help="Rows to diagnose on (CSV/Parquet/NPZ); labels add the latent distance."
        ),
    ],
    label_column: Annotated[
        str, typer.Option(help="Label column (1 = anomaly), if any.")
    ] = "label",
    log: Annotated[
        bool, typer.Option("--log", help="Also log the figures to the model's MLflow run.")
    ] = False,
    seed: Annotated[
        int, typer.Option(help="Seeds posterior samples and the MMD's prior draws.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
) -> None:
    """Latent diagnostics: KL per dimension, active/pruned dimensions, MMD to N(0, I), reconstruction MSE; with labels the normal-vs-abnormal latent distance and every score's AUROC.

    Example: streamvae diagnose models:/streamvae-tabular@champion labelled.parquet --log
    """
    need_uri(model_uri)
    need_path(data, "data")
    from streamvae.workflows.offline import diagnose as run_diagnose

    result = guard(
        lambda: run_diagnose(
            model_uri,
            data,
            tracking=tracking_settings(tracking_uri, work_dir),
            label_column=label_column,
            log=log,
            seed=seed,
        )
    )
    diag = result.diagnostics
    order = sorted(range(len(diag.kl_per_dim)), key=lambda i: -diag.kl_per_dim[i])
    values: dict[str, Any] = {
        "model": f"{result.model.name} v{result.model.version}",
        "rows": result.n_rows,
        "active dims": f"{diag.active_dims} of {len(diag.kl_per_dim)}",
        "pruned dims": list(diag.pruned_dims) or "-",
        "KL per dim (sorted)": ", ".join(f"z{i}={diag.kl_per_dim[i]:.3g}" for i in order),
        "MMD^2 to N(0, I)": diag.mmd_prior,
        "reconstruction MSE": diag.recon_mse,
        "latent distance normal vs abnormal": diag.latent_distance
        if diag.latent_distance is not None
        else "- (needs both labels)",
    } | {f"AUROC {kind}": value for kind, value in result.auroc.items()}
    if as_json:
        values["KL per dim (sorted)"] = {f"z{i}": float(diag.kl_per_dim[i]) for i in order}
        console.print_json(json.dumps(values, default=str))
    else:
        print_table("diagnostics", values)


@app.command()
def promote(
    model_uri: Annotated[
        str, typer.Argument(help="The registered version: models:/NAME/VERSION (or @ALIAS).")
    ],
    alias: Annotated[str, typer.Option(help="Alias to point at it.")] = "champion",
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
    as_json: JsonOpt = False,
) -> None:
    """Point a registry alias (champion by default) at a calibrated model version.

    Example: streamvae promote models:/streamvae-tabular/3 --alias champion
    """
    need_uri(model_uri)
    if not model_uri.startswith("models:/"):
        fail(f"promote needs a registered model URI (models:/NAME/VERSION), got {model_uri!r}")
    from streamvae.workflows.offline import promote as run_promote

    ref = guard(
        lambda: run_promote(model_uri, alias, tracking=tracking_settings(tracking_uri, work_dir))
    )
    if as_json:
        emit("", {"model": ref.name, "alias": alias, "version": ref.version}, as_json=True)
    else:
        console.print(f"{ref.uri} -> version {ref.version}")


@app.command()
def serve(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    model_uri: Annotated[
        str | None,
        typer.Option(help="Model to serve (default models:/streamvae-tabular@champion)."),
    ] = None,
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers host:port[,...].")
    ] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Port of /metrics and /healthz.")] = None,
    max_messages: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many messages.")
    ] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(min=0.0, help="Stop after this many idle seconds.")
    ] = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Consume feature vectors from Kafka, score them, produce alerts and dead letters.

    SIGTERM or Ctrl-C finishes the current batch, flushes, commits and exits 0.

    Example: streamvae serve -c configs/serve.yaml --bootstrap-servers kafka:9092 --model-uri models:/fraud@champion
    """
    extra: dict[str, Any] = {}
    if model_uri is not None:
        extra["model_uri"] = model_uri
    if bootstrap_servers is not None:
        extra["kafka"] = {"bootstrap_servers": bootstrap_servers}
    if metrics_port is not None:
        extra["metrics_port"] = metrics_port
    if tracking_uri is not None:
        extra["tracking"] = {"tracking_uri": tracking_uri}
    options = {"model_uri": "--model-uri", "kafka.bootstrap_servers": "--bootstrap-servers"}
    options |= {"metrics_port": "--metrics-port", "tracking.tracking_uri": "--tracking-uri"}
    settings = guard(lambda: load_settings(ServeSettings, config, set_ or [], extra, options))
    if logging.getLogger().level > logging.INFO:
        setup_logging("INFO")
        logging.getLogger().setLevel(logging.INFO)
    from streamvae.stream.admin import check_reachable

    guard(lambda: check_reachable(settings.kafka))  # before torch and MLflow load: seconds
    from streamvae.service import ScoringService

    def run() -> None:
        with ScoringService(settings) as service:
            err_console.print(f"serving {settings.model_uri}; metrics at {service.metrics_url}")
            stats = service.run(max_messages=max_messages, idle_timeout_s=idle_timeout)
        err_console.print(
            f"stopped: {stats.messages} messages, {stats.consumed} records, {stats.scored} scored, "
            f"{stats.alerted} alerts, {stats.dead_lettered} dead-lettered"
        )

    guard(run)


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
    from streamvae.workflows.demo import DemoSettings, run_demo

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
    from streamvae.workflows.demo_images import ImageDemoSettings, run_image_demo

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
    from streamvae.workflows.demo_kpi import KpiDemoSettings, run_kpi_demo

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
