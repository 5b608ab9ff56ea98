"""Commands for thresholds: ``calibrate`` (with the operator's view) and ``thresholds show``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer
from pydantic import ValidationError
from rich.table import Table

from streamvae.cli.common import (
    JsonOpt,
    TrackingOpt,
    WorkDirOpt,
    app,
    console,
    emit,
    err_console,
    fail,
    fmt,
    guard,
    need_path,
    need_uri,
    print_table,
    tracking_settings,
)
from streamvae.config import CalibrationSettings, first_error
from streamvae.errors import ConfigError
from streamvae.thresholds import PRCurve, Threshold, ThresholdSet

if TYPE_CHECKING:
    from streamvae.reports import ReportFiles
    from streamvae.workflows.offline import CalibrationResult

thresholds_app = typer.Typer(help="Inspect the thresholds in force.", no_args_is_help=True)
app.add_typer(thresholds_app, name="thresholds")

UriArg = Annotated[
    str, typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID or a bundle dir.")
]
RateOpt = Annotated[
    float | None, typer.Option(help="Normal traffic rate (records/s), for alerts per day.")
]


def _bands(text: str | None) -> tuple[tuple[str, float], ...] | None:
    if text is None:
        return None
    try:
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        return tuple((name.strip(), float(bound)) for name, bound in pairs)
    except ValueError:
        fail(f"bad --severity-bands {text!r}: use e.g. critical=0.001,warning=1")
        raise  # unreachable


def _interval(pair: tuple[float, float] | None, level: float | None) -> str:
    if pair is None:
        return "-"
    return f"[{fmt(pair[0])}, {fmt(pair[1])}] ({level:.0%} bootstrap)"


def _threshold_rows(t: Threshold, rate: float | None) -> dict[str, object]:
    target = t.percentile if t.method == "percentile" else t.target_fpr
    rows: dict[str, object] = {
        "score": t.score_kind,
        "threshold": t.value,
        "threshold interval": _interval(t.value_interval, t.interval_level),
        "method": f"{t.method} ({'percentile' if t.method == 'percentile' else 'target rate'} {fmt(target)})",
        "calibration records (normal)": t.n_calibration,
        "expected false-positive rate": t.expected_alert_rate,
        "false-positive rate interval": _interval(t.fpr_interval, t.interval_level),
        "expected alerts per 1,000 normal": 1000 * t.expected_alert_rate,
    }
    if rate is not None:
        rows[f"expected alerts per day at {fmt(rate)} records/s"] = (
            t.expected_alert_rate * rate * 86_400
        )
    if t.extrapolated:
        rows["EXTRAPOLATED"] = "rarer than 1/(n+1): from the tail model, not observed data"
    for key, value in t.diagnostics.items():
        rows[f"  {key}"] = value
    if t.model_version:
        rows["model version"] = f"{t.model_name} v{t.model_version}"
    return rows


def _print_segments(thresholds: ThresholdSet, skipped: dict[str, str]) -> None:
    if not thresholds.segments and not skipped:
        return
    table = Table(
        title=f"per-segment thresholds ({thresholds.segment_field})", title_justify="left"
    )
    for column in ("segment", "records", "threshold", "note"):
        table.add_column(column)
    for key, t in sorted(thresholds.segments.items()):
        table.add_row(key, str(t.n_calibration), fmt(t.value), "")
    for key, reason in sorted(skipped.items()):
        table.add_row(key, "", fmt(thresholds.default.value), f"default: {reason}")
    console.print(table)


def _print_pr_curve(curve: PRCurve, chosen: float) -> None:
    table = Table(
        title="precision / recall on the labelled data (score > threshold)", title_justify="left"
    )
    for column in ("threshold", "precision", "recall", "FPR"):
        table.add_column(column, justify="right")
    picks = np.unique(
        np.r_[
            np.linspace(0, curve.thresholds.size - 1, 9).round().astype(int),
            np.searchsorted(curve.thresholds, chosen),
        ]
    )
    for i in picks[picks < curve.thresholds.size]:
        mark = " <" if math.isclose(curve.thresholds[i], chosen) else ""
        table.add_row(
            fmt(float(curve.thresholds[i])) + mark,
            fmt(float(curve.precision[i])),
            fmt(float(curve.recall[i])),
            fmt(float(curve.false_positive_rate[i])),
        )
    console.print(table)


CALIBRATE_OPTIONS = {
    "percentile": "--percentile", "target_fpr": "--fpr", "alerts_per_day": "--alerts-per-day",
    "records_per_second": "--records-per-second", "tail": "--tail",
    "tail_fraction": "--tail-fraction", "bootstrap": "--bootstrap", "interval_level": "--level",
    "segment_field": "--segment", "min_segment_size": "--min-segment-size",
    "severity_bands": "--severity-bands",
}  # fmt: skip
"""Calibration setting -> the ``calibrate`` option that sets it, for error messages."""


@app.command()
def calibrate(
    model_uri: UriArg,
    data: Annotated[
        Path, typer.Argument(help="Held-out data; rows labelled 1 are never calibrated on.")
    ],
    percentile: Annotated[
        float, typer.Option(help="Percentile of normal scores, in (0, 100).")
    ] = 99.0,
    fpr: Annotated[
        float | None,
        typer.Option(
            help="Target false-positive rate (conformal quantile); overrides --percentile."
        ),
    ] = None,
    alerts_per_day: Annotated[
        float | None,
        typer.Option(help="Target alerts per day on normal traffic (needs --records-per-second)."),
    ] = None,
    records_per_second: RateOpt = None,
    tail: Annotated[
        bool,
        typer.Option(
            "--tail", help="Extrapolate with a generalised Pareto tail fit (rates below 1/(n+1))."
        ),
    ] = False,
    tail_fraction: Annotated[
        float, typer.Option(help="Share of the highest scores the tail is fitted to.")
    ] = 0.1,
    segment: Annotated[
        str | None,
        typer.Option(
            help="Per-segment thresholds by this field (a data column and a message field)."
        ),
    ] = None,
    min_segment_size: Annotated[
        int, typer.Option(min=1, help="Smaller segments use the default threshold.")
    ] = 200,
    severity_bands: Annotated[
        str | None, typer.Option(help="p-value bands, e.g. critical=0.001,warning=1.")
    ] = None,
    labels: Annotated[
        bool, typer.Option("--labels", help="Report the precision/recall curve on labelled data.")
    ] = False,
    target_precision: Annotated[
        float | None, typer.Option(help="Label-aware: the threshold reaching this precision.")
    ] = None,
    target_recall: Annotated[
        float | None, typer.Option(help="Label-aware: the threshold reaching this recall.")
    ] = None,
    label_column: Annotated[
        str, typer.Option(help="Label column of CSV/Parquet data, if any.")
    ] = "label",
    holdout: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.9,
            help="Share of normal rows kept out to measure the false-positive rate.",
        ),
    ] = 0.2,
    bootstrap: Annotated[
        int, typer.Option(min=0, help="Bootstrap resamples for the intervals (0: none).")
    ] = 500,
    level: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.9,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Record without asking.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the thresholds without recording them.")
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            "--report/--no-report",
            help="Write the calibration report (PNG and HTML); logged with the version.",
        ),
    ] = True,
    report_dir: Annotated[
        Path | None, typer.Option(help="Where the report goes (default: WORK_DIR/reports).")
    ] = None,
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
    as_json: JsonOpt = False,
) -> None:
    """Calibrate thresholds on held-out normal data, show what they mean, then record them with that version.

    Example: streamvae calibrate models:/fraud@champion holdout.csv --alerts-per-day 20 --records-per-second 50 --segment merchant_category
    """
    values: dict[str, object] = {
        "percentile": percentile, "target_fpr": fpr, "alerts_per_day": alerts_per_day,
        "records_per_second": records_per_second, "tail": tail, "tail_fraction": tail_fraction,
        "bootstrap": bootstrap, "interval_level": level, "segment_field": segment,
        "min_segment_size": min_segment_size,
    }  # fmt: skip
    bands = _bands(severity_bands)
    if bands is not None:
        values["severity_bands"] = bands

    def settings() -> CalibrationSettings:
        try:
            return CalibrationSettings.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(first_error(exc, CalibrationSettings, CALIBRATE_OPTIONS)) from exc

    spec = guard(lambda: settings().spec())  # before torch and MLflow load: under a second
    need_uri(model_uri)
    need_path(data, "data")
    from streamvae.workflows.offline import CalibrationRequest, prepare_calibration

    request = CalibrationRequest(
        spec=spec, label_column=label_column, holdout_fraction=holdout,
        target_precision=target_precision, target_recall=target_recall,
    )  # fmt: skip
    result = guard(
        lambda: prepare_calibration(
            model_uri, data, request, tracking=tracking_settings(tracking_uri, work_dir)
        )
    )
    rows = _calibration_rows(result, records_per_second, as_json=as_json)
    if not as_json:
        print_table(f"calibration of {result.model.name} v{result.model.version}", rows)
        _print_segments(result.thresholds, result.skipped_segments)
        if (labels or request.label_aware) and result.pr_curve is not None:
            _print_pr_curve(result.pr_curve, result.thresholds.default.value)
    recorded = _record(result, model_uri, dry_run=dry_run, yes=yes)
    directory = report_dir if report_dir is not None else work_dir / "reports"
    files = _report(result, rows, directory, recorded=recorded) if report else None
    if as_json:
        paths = {"report png": str(files.png), "report html": str(files.html)} if files else {}
        emit("", rows | {"recorded": recorded} | paths, as_json=True)
    else:
        if recorded:
            console.print(f"recorded for {result.model.name} v{result.model.version}")
        if files is not None:
            logged = " (logged to the version's MLflow run)" if recorded else ""
            console.print(f"calibration report: {files.png} and {files.html}{logged}")
    if not recorded and not dry_run:
        raise typer.Exit(code=1)


def _calibration_rows(
    result: CalibrationResult, records_per_second: float | None, *, as_json: bool
) -> dict[str, object]:
    rows = _threshold_rows(result.thresholds.default, records_per_second)
    rows["normal records / anomalies in the data"] = f"{result.n_normal} / {result.n_anomalies}"
    if result.holdout_fpr is not None:
        rows[f"false-positive rate on {result.n_holdout} held-out normals"] = result.holdout_fpr
    if as_json:
        rows["segments"] = {k: t.value for k, t in result.thresholds.segments.items()}
        rows["skipped segments"] = dict(result.skipped_segments)
    return rows


def _report(
    result: CalibrationResult, rows: dict[str, object], directory: Path, *, recorded: bool
) -> ReportFiles:
    """Write the report with the figures just printed; log it when the calibration was recorded."""
    from streamvae.workflows.offline import write_calibration_report

    facts = {k: fmt(v) for k, v in rows.items() if not isinstance(v, dict)}
    facts["recorded"] = "yes" if recorded else "no (dry run or declined)"
    return guard(lambda: write_calibration_report(result, directory, facts, log=recorded))


def _record(result: CalibrationResult, model_uri: str, *, dry_run: bool, yes: bool) -> bool:
    """Record the calibration unless a dry run or the operator declines; whether it was."""
    if dry_run:
        err_console.print("dry run: nothing recorded")
        return False
    if not yes and not typer.confirm(
        f"Record these thresholds for {result.model.uri or model_uri}?", default=False, err=True
    ):
        err_console.print("not recorded (use --yes to record without asking)")
        return False
    from streamvae.workflows.offline import commit_calibration

    guard(lambda: commit_calibration(result))
    return True


@thresholds_app.command("show")
def show(
    model_uri: UriArg,
    records_per_second: RateOpt = None,
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
    as_json: JsonOpt = False,
) -> None:
    """Print the thresholds in force for a model (what `serve` would use).

    Example: streamvae thresholds show models:/fraud@champion --records-per-second 50
    """
    need_uri(model_uri)
    from streamvae.workflows.offline import show_thresholds

    ref, thresholds = guard(
        lambda: show_thresholds(model_uri, tracking=tracking_settings(tracking_uri, work_dir))
    )
    rows = _threshold_rows(thresholds.default, records_per_second)
    rows["created at"] = thresholds.default.created_at or "-"
    rows["severity bands (max p-value)"] = ", ".join(
        f"{n} <= {fmt(p)}" for n, p in thresholds.severity_bands
    )
    rows["calibration scores kept (p-values)"] = (
        int(thresholds.reference[""].size) if "" in thresholds.reference else "none"
    )
    if as_json:
        rows["model"] = f"{ref.name} v{ref.version}"
        rows["segments"] = {k: t.value for k, t in thresholds.segments.items()}
        emit("", rows, as_json=True)
        return
    print_table(f"thresholds in force for {model_uri} ({ref.name} v{ref.version})", rows)
    _print_segments(thresholds, {})
