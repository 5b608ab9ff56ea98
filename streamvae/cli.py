"""The ``streamvae`` command line: train, calibrate, evaluate, promote, serve, demo."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streamvae.config import ServeSettings, TrackingSettings, TrainSettings, load_settings
from streamvae.errors import StreamVAEError

app = typer.Typer(
    name="streamvae",
    help="Streaming anomaly detection with variational autoencoders.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
logger = logging.getLogger("streamvae.cli")
T = TypeVar("T")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a setting: key.path=value (repeatable)."),
]
TrackingOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or a local SQLite store).",
    ),
]
WorkDirOpt = Annotated[Path, typer.Option("--work-dir", help="Where the local MLflow store lives.")]
NOISY_LOGGERS = ("kafka", "mlflow", "alembic", "urllib3", "git", "httpx")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


@app.callback()
def _main(
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "WARNING",
) -> None:
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        _fail(f"bad --log-level {log_level!r}: use DEBUG, INFO, WARNING or ERROR")
    _setup_logging(log_level)


def _fail(message: str) -> None:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _guard(action: Callable[[], T]) -> T:
    """Run ``action``; a user error becomes one line on stderr and exit code 2."""
    try:
        return action()
    except StreamVAEError as exc:
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise  # unreachable: _fail exits


def _tracking(uri: str | None, work_dir: Path) -> TrackingSettings:
    return TrackingSettings(tracking_uri=uri, work_dir=str(work_dir))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _print_table(title: str, rows: Mapping[str, object]) -> None:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, _fmt(value))
    console.print(table)


class ProgressBar:
    """A ``TrainingCallback`` that draws a progress bar with the latest losses."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("[bold]training"), BarColumn(), TextColumn("{task.completed}/{task.total} epochs"),
            TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), console=err_console, transient=False,
        )  # fmt: skip
        self._task: Any = None

    def on_train_start(self, max_epochs: int) -> None:
        """Start the bar."""
        self._progress.start()
        self._task = self._progress.add_task("train", total=max_epochs, losses="")

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Advance the bar and show the losses."""
        shown = " ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k.endswith("loss"))
        self._progress.update(self._task, completed=epoch + 1, losses=shown)

    def on_train_end(self, best_epoch: int, stopped_early: bool) -> None:
        """Close the bar."""
        self._progress.update(self._task, total=self._progress.tasks[0].completed)
        self._progress.stop()


@app.command()
def train(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data: Annotated[
        Path | None, typer.Option(help="Training data (CSV, Parquet or NPZ); overrides data.path.")
    ] = None,
    alias: Annotated[
        str | None, typer.Option(help="Set this registry alias (e.g. champion) on the new version.")
    ] = None,
    tracking_uri: TrackingOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
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
    settings = _guard(lambda: load_settings(TrainSettings, config, set_ or [], extra))
    from streamvae.workflows.train import train as run_train

    outcome = _guard(lambda: run_train(settings, [] if quiet else [ProgressBar()]))
    thr = outcome.threshold
    _print_table(
        "trained",
        {
            "run id": outcome.run_id,
            "model": f"{outcome.registered_model} v{outcome.version}"
            if outcome.version
            else outcome.model_uri,
            "alias": outcome.alias or "-",
            "device": outcome.fit.device,
            "epochs run / best": f"{outcome.fit.epochs_run} / {outcome.fit.best_epoch + 1}",
            "best val loss": outcome.fit.best_metrics.get("val_loss", float("nan")),
            "train / calibration rows": f"{outcome.n_train} / {outcome.n_calibration}",
            "threshold": thr.value if thr else "not calibrated (no held-out rows)",
            "expected alerts per 1,000 normal": 1000 * thr.expected_alert_rate if thr else "-",
            "tracking uri": outcome.tracking_uri,
            "seconds": round(outcome.seconds, 1),
        },
    )


@app.command()
def calibrate(
    model_uri: Annotated[
        str,
        typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID or a bundle dir."),
    ],
    data: Annotated[
        Path, typer.Argument(help="Held-out normal data (rows labelled 1 are left out).")
    ],
    percentile: Annotated[
        float, typer.Option(help="Percentile of normal scores, in (0, 100).")
    ] = 99.0,
    critical_percentile: Annotated[
        float | None, typer.Option(help="Higher percentile for critical alerts.")
    ] = None,
    label_column: Annotated[
        str, typer.Option(help="Label column of CSV/Parquet data, if any.")
    ] = "label",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the threshold without recording it.")
    ] = False,
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
) -> None:
    """Calibrate the threshold of a model on held-out normal data and record it with that version.

    Example: streamvae calibrate models:/streamvae-tabular@champion holdout.csv --percentile 99.5
    """
    from streamvae.workflows.offline import calibrate as run_calibrate

    result = _guard(
        lambda: run_calibrate(
            model_uri, data, percentile, tracking=_tracking(tracking_uri, work_dir),
            critical_percentile=critical_percentile, label_column=label_column, record=not dry_run,
        )
    )  # fmt: skip
    thr = result.threshold
    _print_table(
        "threshold" + (" (dry run: not recorded)" if dry_run else " recorded"),
        {
            "model": f"{result.model.name} v{result.model.version}",
            "score": thr.score_kind,
            "threshold": thr.value,
            "percentile": thr.percentile,
            "critical threshold": thr.critical_value if thr.critical_value is not None else "-",
            "normal records used": thr.n_calibration,
            "anomalies left out": result.n_anomalies_ignored,
            "expected alerts per 1,000 normal": result.alerts_per_1000,
            "alert rate on these records": thr.empirical_alert_rate,
        },
    )


@app.command()
def evaluate(
    model_uri: Annotated[
        str,
        typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID or a bundle dir."),
    ],
    data: Annotated[
        Path,
        typer.Argument(help="Labelled data: CSV/Parquet with a label column, or NPZ with 'y'."),
    ],
    label_column: Annotated[str, typer.Option(help="Label column (1 = anomaly).")] = "label",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
) -> None:
    """Score labelled data and print AUROC, average precision and precision/recall/F1 at the threshold.

    Example: streamvae evaluate models:/streamvae-tabular@champion labelled.parquet
    """
    from streamvae.workflows.offline import evaluate as run_evaluate

    result = _guard(
        lambda: run_evaluate(
            model_uri, data, tracking=_tracking(tracking_uri, work_dir), label_column=label_column
        )
    )
    values = {"model": f"{result.model.name} v{result.model.version}"} | result.report.to_dict()
    if as_json:
        console.print_json(json.dumps(values, default=str))
    else:
        _print_table("evaluation", values)


@app.command()
def promote(
    model_uri: Annotated[
        str, typer.Argument(help="The registered version: models:/NAME/VERSION (or @ALIAS).")
    ],
    alias: Annotated[str, typer.Option(help="Alias to point at it.")] = "champion",
    tracking_uri: TrackingOpt = None,
    work_dir: WorkDirOpt = Path(".streamvae"),
) -> None:
    """Point a registry alias (champion by default) at a calibrated model version.

    Example: streamvae promote models:/streamvae-tabular/3 --alias champion
    """
    from streamvae.workflows.offline import promote as run_promote

    ref = _guard(lambda: run_promote(model_uri, alias, tracking=_tracking(tracking_uri, work_dir)))
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
    settings = _guard(lambda: load_settings(ServeSettings, config, set_ or [], extra))
    if logging.getLogger().level > logging.INFO:
        _setup_logging("INFO")
        logging.getLogger().setLevel(logging.INFO)
    from streamvae.service import ScoringService

    def run() -> None:
        with ScoringService(settings) as service:
            err_console.print(f"serving {settings.model_uri}; metrics at {service.metrics_url}")
            stats = service.run(max_messages=max_messages, idle_timeout_s=idle_timeout)
        err_console.print(
            f"stopped: {stats.messages} messages, {stats.consumed} records, {stats.scored} scored, "
            f"{stats.alerted} alerts, {stats.dead_lettered} dead-lettered"
        )

    _guard(run)


@app.command()
def demo(
    work_dir: Annotated[
        Path | None, typer.Option(help="Keep the MLflow store here (default: a temporary dir).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, training and replay order.")] = 0,
    beta: Annotated[float, typer.Option(min=0.0, help="KL weight of the beta-VAE.")] = 1.0,
    percentile: Annotated[float, typer.Option(help="Calibration percentile.")] = 99.0,
    linger: Annotated[
        float, typer.Option(min=0.0, help="Keep /metrics up this many seconds at the end.")
    ] = 0.0,
) -> None:
    """Run everything on embedded parts: broker, MLflow store, training, calibration, serving, replay.

    Example: streamvae demo --linger 60
    """
    if not 0.0 < percentile < 100.0:
        _fail(f"bad --percentile {percentile}: must be strictly between 0 and 100")
    from streamvae.workflows.demo import DemoSettings, run_demo

    cfg = DemoSettings(
        work_dir=work_dir, seed=seed, beta=beta, percentile=percentile, linger_s=linger
    )
    report = _guard(
        lambda: run_demo(cfg, [ProgressBar()], lambda line: err_console.print(f"- {line}"))
    )
    _print_table(
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
    )


def main() -> None:
    """Console-script entry point."""
    app()
