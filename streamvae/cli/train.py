"""Commands that train and register: ``train`` (feature vectors), ``train-kpi``, ``train-images``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from streamvae.cli.common import (
    ConfigOpt,
    DeviceOpt,
    JsonOpt,
    NewAliasOpt,
    ParamOpt,
    ProgressBar,
    QuietOpt,
    SeedOpt,
    SetOpt,
    TrackingOpt,
    WorkDirOpt,
    app,
    check_device,
    emit,
    err_console,
    fail,
    fit_facts,
    guard,
    need_path,
    parse_params,
    tracking_settings,
    trained_facts,
)
from streamvae.config import TrainSettings, load_settings, unknown_model_message
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

    Data parallel: `torchrun --nproc-per-node N -m streamvae train ...` trains N processes
    (gloo on CPUs, NCCL on GPUs), each on its shard; rank 0 logs, calibrates and registers.

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
    from streamvae.data.streaming import is_glob

    path = settings.data.path
    if path is not None and not is_glob(path):  # a glob is checked when read
        need_path(path, "data file")
    from streamvae.training.distributed import process_group
    from streamvae.workflows.train import train as run_train
    from streamvae.workflows.train import train_shard

    # under torchrun every process trains its shard; rank 0 alone logs, calibrates, registers
    with process_group(settings.training.device) as (rank, size):
        if rank > 0:
            guard(lambda: train_shard(settings))
            return
        outcome = guard(lambda: run_train(settings, [] if quiet or as_json else [ProgressBar()]))
    thr = outcome.threshold.default if outcome.threshold else None
    facts = {
        **fit_facts(outcome.fit),
        "train / calibration rows": f"{outcome.n_train} / {outcome.n_calibration}",
        **({"processes (torchrun)": size} if size > 1 else {}),
        "threshold": thr.value if thr else "not calibrated (no held-out rows)",
        "expected alerts per 1,000 normal": 1000 * thr.expected_alert_rate if thr else "-",
    }
    emit("trained", trained_facts(outcome, **facts), as_json=as_json)


@app.command("train-kpi")
def train_kpi(
    data: Annotated[Path, typer.Argument(help="KPI history, one row per point (CSV or Parquet).")],
    series_column: Annotated[str, typer.Option(help="Series id column.")] = "series",
    ts_column: Annotated[
        str, typer.Option(help="Timestamp column (epoch ms or date-time text).")
    ] = "timestamp",
    value_column: Annotated[str, typer.Option(help="Value column.")] = "value",
    model: Annotated[
        str,
        typer.Option(
            help=f"Window model: {', '.join(KPI_MODELS)} (conditional ones read the calendar)."
        ),
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
    param: ParamOpt = None,
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
            params=parse_params(param),
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
    facts = {
        "series": outcome.bundle.meta["series"],
        "train / calibration windows": f"{outcome.n_train} / {outcome.n_calibration}",
        "thresholds": "-"
        if thresholds is None
        else f"{len(thresholds.segments)} per {thresholds.segment_field or 'all'} "
        f"+ default {thresholds.default.value:.4g}",
    }
    emit("trained (KPI)", trained_facts(outcome, **facts), as_json=as_json)


@app.command("train-images")
def train_images(
    data: Annotated[
        Path, typer.Argument(help="Normal images: .npy / .npz (N, C, H, W) or a PNG folder.")
    ],
    model: Annotated[
        str, typer.Option(help=f"Image model: {', '.join(IMAGE_MODELS)}.")
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
    param: ParamOpt = None,
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
            params=parse_params(param),
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
    facts = {
        "images (C, H, W)": f"{len(images)} x {tuple(images.shape[1:])}",
        "train / calibration": f"{outcome.n_train} / {outcome.n_calibration}",
        "epochs run": outcome.bundle.meta.get("epochs_run", "-"),
        "score": outcome.bundle.score_kind,
        "threshold": "-" if thresholds is None else f"{thresholds.default.value:.4g}",
        "pixel thresholds": ", ".join(f"{k} {v:.3g}" for k, v in pixel.items()),
    }
    emit("trained (images)", trained_facts(outcome, **facts), as_json=as_json)
