"""``streamvae score`` (verdicts for a file of feature rows, without Kafka) and ``models``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from streamvae.cli.common import (
    JsonOpt,
    QuietOpt,
    TrackingOpt,
    WorkDirOpt,
    app,
    console,
    err_console,
    fmt,
    guard,
    need_uri,
    print_table,
    tracking_settings,
)


@app.command()
def score(
    model_uri: Annotated[
        str,
        typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID or a bundle dir."),
    ],
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="Feature rows: CSV or Parquet (columns named as the model's features; any "
            "size: read in chunks), or NPZ (X, optional feature_names). A KPI model: CSV or "
            "Parquet points (series, ts in epoch ms, value). An image model: .npy, .npz or "
            "a folder of PNG/JPEG files.",
        ),
    ],
    output: Annotated[
        Path, typer.Argument(help="Where the verdicts go: .parquet or .csv (overwritten).")
    ],
    id_column: Annotated[
        list[str] | None,
        typer.Option(
            "--id-column",
            help="Input column copied to the output (repeat; default: every non-feature column).",
        ),
    ] = None,
    top_features: Annotated[
        int, typer.Option(min=0, help="Features explaining each row (top1_feature, ...).")
    ] = 3,
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Rows read, scored and written at a time (memory bound).")
    ] = 65_536,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    quiet: QuietOpt = False,
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
) -> None:
    """Score every row of a file and write score, threshold, p-value, severity, is_anomaly and the top features.

    The thresholds are the ones recorded for the model version (by train or a later
    calibrate), as `serve` applies them, so a record gets the same verdict here as in the
    service. Rows with a missing or non-finite feature are kept, unscored, with `error`
    set. Prints rows, anomalies and rows/s.

    Example: streamvae score models:/streamvae-tabular@champion transactions.parquet verdicts.parquet
    Example: streamvae score models:/fraud/3 nightly.csv out.csv --id-column txn_id
    """
    from streamvae.data.batches import check_paths

    need_uri(model_uri)
    guard(lambda: check_paths(input_path, output))  # before torch and MLflow load (seconds)
    from streamvae.workflows.score import score_file

    progress = Progress(
        SpinnerColumn(), TextColumn("[bold]scoring"), TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(), console=err_console, transient=True, disable=quiet or as_json,
    )  # fmt: skip
    with progress:
        task = progress.add_task("score", total=None)
        summary = guard(
            lambda: score_file(
                model_uri,
                input_path,
                output,
                tracking=tracking_settings(tracking_uri, work_dir),
                id_columns=id_column or None,
                top_features=top_features,
                chunk_rows=chunk_rows,
                on_chunk=lambda rows: progress.advance(task, rows),
            )
        )
    values = summary.to_dict()
    if as_json:
        console.print_json(json.dumps(values, default=str))
    else:
        print_table("score", values)


@app.command()
def models(
    name: Annotated[
        str | None, typer.Argument(help="One registered model (default: every model).")
    ] = None,
    families: Annotated[
        bool,
        typer.Option(
            "--families",
            help="List the model families instead: the input kinds each serves and the "
            "hyper-parameters --param / model.params may set.",
        ),
    ] = False,
    as_json: JsonOpt = False,
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
) -> None:
    """List registered models: versions, aliases, threshold, score kind and calibration time.

    Example: streamvae models
    Example: streamvae models fraud --json
    Example: streamvae models --families
    """
    from rich.table import Table

    if families:
        _families(as_json)
        return

    from streamvae.tracking import VersionListing, configure, list_versions  # MLflow, no torch

    settings = tracking_settings(tracking_uri, work_dir)

    def listing() -> list[VersionListing]:
        configure(settings)
        return list_versions(name)

    listed = guard(listing)
    if as_json:
        console.print_json(json.dumps([v.to_dict() for v in listed]))
        return
    table = Table(title="registered models", title_justify="left")
    for column in ("model", "version", "aliases", "threshold", "score", "calibrated", "created"):
        table.add_column(column)
    for v in listed:
        table.add_row(
            v.name, v.version, ", ".join(v.aliases) or "-",
            "-" if v.threshold is None else fmt(float(v.threshold)), v.score_kind or "-",
            v.calibrated_at or "not calibrated", v.created_at,
        )  # fmt: skip
    console.print(table)
    if not listed:
        err_console.print("no registered models in this store")


def _families(as_json: bool) -> None:
    """The model families of the registry: input kinds, params, summary."""
    from rich.table import Table

    from streamvae.models import MODEL_REGISTRY

    if as_json:
        rows = [
            {"family": key, "kinds": sorted(spec.kinds), "params": list(spec.params),
             "summary": spec.summary}
            for key, spec in MODEL_REGISTRY.items()
        ]  # fmt: skip
        console.print_json(json.dumps(rows))
        return
    table = Table(title="model families", title_justify="left")
    for column in ("family", "input kinds", "params", "summary"):
        table.add_column(column)
    for key, spec in MODEL_REGISTRY.items():
        kinds, params = ", ".join(sorted(spec.kinds)), ", ".join(spec.params)
        table.add_row(key, kinds, params, spec.summary)
    console.print(table)
