"""``streamvae bench``: benchmarks on public corpora (``bench nab``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from streamvae.cli.common import (
    JsonOpt,
    app,
    console,
    err_console,
    fail,
    guard,
)

bench_app = typer.Typer(
    help="Benchmarks on public corpora (the data is not shipped: point at a checkout).",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")


@bench_app.command("nab")
def nab(
    root: Annotated[
        Path,
        typer.Argument(
            help="A NAB corpus: NAB's checkout (data/ + labels/combined_windows.json) or a "
            "folder of CSVs with windows.json."
        ),
    ],
    write_results: Annotated[
        Path | None, typer.Option(help="Write per-point scores in NAB's results layout here.")
    ] = None,
    model: Annotated[
        str, typer.Option(help="Window model family (dcvae reads the calendar).")
    ] = "dcvae",
    window_len: Annotated[int, typer.Option(min=2, help="Points per window.")] = 32,
    ensemble: Annotated[
        int, typer.Option(min=1, help="Models whose residuals are averaged per file.")
    ] = 1,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the first model.")] = 0,
    diagnosis: Annotated[
        bool,
        typer.Option(
            "--diagnose",
            help="Per file: the fused score inside vs outside the windows, where in each "
            "window the first detection fell, and the false positives.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the Numenta Anomaly Benchmark: three profile scores per file and overall.

    Each file is streamed in order: a window model learns from the probationary first
    15 %, then every point is scored online against what its series has shown so far (the
    model's residual and the window's novelty, as tail surprises); the profile thresholds
    are optimised over the corpus, as NAB does.

    Example: streamvae bench nab ../NAB --write-results nab-results --diagnose
    """
    run_nab(root, write_results, model, window_len, ensemble, epochs, seed, diagnosis, as_json)


def run_nab(
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
    """``bench nab`` (and its alias ``evaluate --nab``)."""
    from streamvae.bench.nab import (
        NabSettings,
        diagnose,
        evaluate_nab,
        format_diagnosis,
        format_report,
        report_dict,
    )
    from streamvae.bench.nab import write_results as write_nab_results
    from streamvae.data.nab import load_nab
    from streamvae.models import MODEL_REGISTRY

    if model not in MODEL_REGISTRY:
        fail(f"bad --model {model!r}: use one of {sorted(MODEL_REGISTRY)}")
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
