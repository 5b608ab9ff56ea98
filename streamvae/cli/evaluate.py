"""Commands that judge a model on labelled data: ``evaluate``, ``diagnose``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from streamvae.cli.bench import run_nab
from streamvae.cli.common import (
    TrackingOpt,
    WorkDirOpt,
    app,
    console,
    err_console,
    fail,
    guard,
    need_path,
    need_uri,
    print_table,
    tracking_settings,
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
        typer.Option(help="Deprecated alias of `streamvae bench nab DIR` (its defaults)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
) -> None:
    """Score labelled data and print AUROC, average precision and precision/recall/F1 at the threshold.

    An image model scores labelled images the same way and, when masks come with them,
    also prints the pixel AUROC of its rec_error map and pixel precision/recall at the
    calibrated pixel threshold.

    Example: streamvae evaluate models:/streamvae-tabular@champion labelled.parquet
    Example: streamvae evaluate models:/streamvae-images@champion digits.npz --normal-label 3
    """
    if nab is not None:
        if model_uri is not None or data is not None:
            fail("--nab trains one model per file: give no MODEL_URI or DATA with it")
        run_nab(nab, None, "dcvae", 32, 1, 100, 0, False, as_json)
        err_console.print("note: evaluate --nab is deprecated, use `streamvae bench nab DIR`")
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
