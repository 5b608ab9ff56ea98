"""Shared pieces of the command line: the Typer app, options, output and error mapping."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streamvae.config import TrackingSettings
from streamvae.errors import StreamVAEError

if TYPE_CHECKING:  # pragma: no cover - torch loads only when a command needs it
    from streamvae.tracking import TrainOutcome
    from streamvae.training import FitResult

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
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="A hyper-parameter of the model family: NAME=VALUE, the value in YAML "
        "(repeatable), e.g. kernel_size=7 or channels=[8,16]; `streamvae models --families` "
        "lists each family's.",
    ),
]
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
NewAliasOpt = Annotated[
    str | None, typer.Option(help="Set this registry alias (e.g. champion) on the new version.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON, not a table.")]
SeedOpt = Annotated[int, typer.Option(help="Training seed.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
DEVICES = ("auto", "cpu", "cuda")
NOISY_LOGGERS = ("kafka", "mlflow", "alembic", "urllib3", "git", "httpx")


def setup_logging(level: str) -> None:
    """Log to stderr at ``level``; third-party loggers stay at WARNING or above.

    MLflow sets its own logger to INFO when it is imported (later: commands import it
    lazily), which ``MLFLOW_LOGGING_LEVEL`` overrides: its "Creating initial MLflow database
    tables" lines show only at ``--log-level DEBUG``.
    """
    if level.upper() != "DEBUG":
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
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
        fail(f"bad --log-level {log_level!r}: use DEBUG, INFO, WARNING or ERROR")
    setup_logging(log_level)


def fail(message: str) -> None:
    """Print one error line and exit with code 2."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def guard(action: Callable[[], T]) -> T:
    """Run ``action``; a user error becomes one line on stderr and exit code 2."""
    try:
        return action()
    except StreamVAEError as exc:
        fail(one_line(exc))
        raise  # unreachable: _fail exits


def one_line(exc: BaseException) -> str:
    """The first line of an error, then its notes (e.g. which MLflow run it marked FAILED)."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    notes = getattr(exc, "__notes__", None) or []
    return message + "".join(f" ({note})" for note in notes)


def need_uri(uri: str) -> None:
    """Fail fast (before torch and MLflow load) on a malformed model URI."""
    from streamvae.config import check_model_uri

    guard(lambda: check_model_uri(uri))


def need_path(path: Path | str, what: str) -> None:
    """Fail fast, in one line, when an input file or folder does not exist."""
    if not Path(path).exists():
        fail(f"{what} {str(path)!r} does not exist")


def tracking_settings(uri: str | None, work_dir: Path) -> TrackingSettings:
    """Tracking settings from the --tracking-uri and --work-dir options."""
    return TrackingSettings(tracking_uri=uri, work_dir=str(work_dir))


def fmt(value: object) -> str:
    """A value for a table cell (4 significant digits, n/a for NaN)."""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def print_table(title: str, rows: Mapping[str, object]) -> None:
    """A two-column table of labelled values."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, fmt(value))
    console.print(table)


def _plain(value: object) -> object:
    """A JSON-ready value (NaN and infinities become null, tuples lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def emit(title: str, rows: Mapping[str, object], *, as_json: bool) -> None:
    """Print a command's result: a two-column table, or (``--json``) one JSON object."""
    if as_json:
        console.print_json(json.dumps(_plain(dict(rows))))
    else:
        print_table(title, rows)


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


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``--param NAME=VALUE`` items as a mapping (values read as YAML); exits on a bad one."""
    import yaml

    params: dict[str, Any] = {}
    for item in items or ():
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            fail(f"bad --param {item!r}: use NAME=VALUE, e.g. kernel_size=7")
        try:
            params[name.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            fail(f"bad --param {item!r}: the value is not YAML")
    return params


def trained_facts(outcome: TrainOutcome, **middle: object) -> dict[str, object]:
    """What every ``train*`` command prints: the run and version, ``middle``, where it went."""
    version = f"{outcome.registered_model} v{outcome.version}" if outcome.version else None
    return {
        "run id": outcome.run_id,
        "model": version or outcome.model_uri,
        "alias": outcome.alias or "-",
        **middle,
        "tracking uri": outcome.tracking_uri,
        "calibration report": outcome.report or "-",
        "seconds": round(outcome.seconds, 1),
    }


def fit_facts(fit: FitResult | None) -> dict[str, object]:
    """The training loop's figures for a command's output (none when it did not say)."""
    if fit is None:
        return {}
    return {
        "device": fit.device,
        "epochs run / best": f"{fit.epochs_run} / {fit.best_epoch + 1}",
        "best val loss": fit.best_metrics.get("val_loss", float("nan")),
    }


def check_device(device: str) -> None:
    """Exit with a one-line error unless ``device`` is auto, cpu or cuda."""
    if device not in DEVICES:
        fail(f"bad --device {device!r}: use auto, cpu or cuda")
