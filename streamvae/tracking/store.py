"""MLflow tracking: store set-up, training runs, model logging, registry aliases."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from streamvae._version import __version__
from streamvae.config import TrackingSettings, check_model_uri
from streamvae.errors import ModelLoadError
from streamvae.reports import CalibrationReport, write_report

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.models import ModelSignature

logger = logging.getLogger(__name__)

PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
THRESHOLD_TAG = "streamvae.threshold"  # a human-readable summary of the calibration
CALIBRATION_TAG = "streamvae.calibration"  # run artifact path of the calibration in force
BUNDLE_ARTIFACT = "bundle"
FAILURE_TAG = "streamvae.failure"  # why a run ended FAILED


def tracking_uri(settings: TrackingSettings) -> str:
    """The tracking URI in force: the setting, else ``MLFLOW_TRACKING_URI``, else SQLite."""
    if settings.tracking_uri:
        return settings.tracking_uri
    from_env = os.environ.get("MLFLOW_TRACKING_URI")
    if from_env:
        return from_env
    work = Path(settings.work_dir).resolve()
    return f"sqlite:///{work / 'mlflow.db'}"


def configure(settings: TrackingSettings) -> str:
    """Point MLflow at the store (creating the local work directory) and return its URI."""
    uri = tracking_uri(settings)
    # MLflow draws download progress bars (when tqdm is installed) on the terminal, into the
    # output of commands such as `evaluate --json`; a user can still turn them back on
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(settings: TrackingSettings) -> str:
    """Create the experiment if needed (local artifacts under ``work_dir`` for SQLite stores)."""
    client = MlflowClient()
    found = client.get_experiment_by_name(settings.experiment)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if tracking_uri(settings).startswith("sqlite:"):
        location = (Path(settings.work_dir).resolve() / "artifacts").as_uri()
    return str(client.create_experiment(settings.experiment, artifact_location=location))


@contextmanager
def tracked_run(experiment_id: str) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run whose failure is recorded on the run and said in the error.

    When the body raises, the run ends ``FAILED`` (MLflow's own handling) with the reason in
    the ``streamvae.failure`` tag, and the exception gains the note "MLflow run ID marked
    FAILED", which the CLI prints after the error, so no failed run is left unexplained.
    """
    with mlflow.start_run(experiment_id=experiment_id) as run:
        try:
            yield run
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            try:
                mlflow.set_tag(FAILURE_TAG, reason[:5000])
            except MlflowException:  # pragma: no cover - the store itself failed
                logger.warning("could not tag run %s with its failure", run.info.run_id)
            exc.add_note(f"MLflow run {run.info.run_id} marked FAILED")
            raise


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (for ``log_params``)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


class MlflowCallback:
    """A ``TrainingCallback`` that logs every epoch's metrics to the active run."""

    def on_train_start(self, max_epochs: int) -> None:
        """Log the epoch budget."""
        mlflow.log_param("max_epochs", max_epochs)

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Log the epoch's metrics with ``step=epoch``."""
        mlflow.log_metrics(dict(metrics), step=epoch)

    def on_train_end(self, best_epoch: int, stopped_early: bool) -> None:
        """Log where training stopped."""
        mlflow.log_metrics({"best_epoch": best_epoch, "stopped_early": float(stopped_early)})


def feature_signature(
    features: Sequence[str], segment_field: str | None = None, *, explained: int = 0
) -> ModelSignature:
    """The pyfunc signature of a feature-vector model.

    Inputs: every feature as a required double, and the segment field (when thresholds are
    per segment) as an optional string: MLflow drops input columns a signature does not
    name, so ``calibrate --segment`` re-sets the signature with its field.
    Outputs: the scores and the verdict columns ``predict`` returns.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("double", name) for name in features]
    if segment_field is not None and segment_field not in features:
        inputs.append(ColSpec("string", segment_field, required=False))
    doubles = ("score", "neg_elbo", "recon_error", "kl")
    outputs = [ColSpec("double", name) for name in doubles]
    outputs.append(ColSpec("double", "neighbour", required=False))
    verdicts = [("threshold", "double"), ("p_value", "double"), ("severity", "string")]
    verdicts += [("is_anomaly", "boolean"), ("segment", "string")]
    for k in range(1, explained + 1):
        verdicts += [(f"top{k}_feature", "string"), (f"top{k}_value", "double")]
        verdicts += [(f"top{k}_expected", "double"), (f"top{k}_share", "double")]
    outputs += [ColSpec(kind, name, required=False) for name, kind in verdicts]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))  # type: ignore[arg-type]


KPI_SIGNATURE_COLUMNS = (("series", "string"), ("ts", "long"), ("value", "double"))


def point_signature() -> ModelSignature:
    """The pyfunc signature of a KPI model: points ``series, ts (epoch ms), value`` in."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec(kind, name) for name, kind in KPI_SIGNATURE_COLUMNS]
    return ModelSignature(inputs=Schema(inputs))  # type: ignore[arg-type]


def set_model_signature(model_uri: str, signature: ModelSignature) -> None:
    """Re-set the signature of a logged model (``models:/m-...`` or ``runs:/``)."""
    try:
        mlflow.models.set_signature(model_uri, signature)
    except MlflowException as exc:  # e.g. a read-only artifact store: the old one stays
        logger.warning("could not update the signature of %s: %s", model_uri, exc.message)


def log_bundle(
    bundle_dir: Path,
    registered_model: str | None,
    *,
    signature: ModelSignature | None = None,
    input_example: Any = None,
) -> tuple[str, str | None]:
    """Log the bundle as a pyfunc model (models from code) and optionally register it.

    The bundle lands at ``artifacts/bundle`` in the model whatever its directory is called
    (MLflow keeps the directory's own name; ``resolve`` looks for ``bundle``). The
    ``signature`` and ``input_example`` (a few training rows) show in the MLflow UI and let
    ``mlflow models serve`` check requests.

    Returns:
        ``(model_uri, version)``; ``version`` is ``None`` when not registered.
    """
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(bundle_dir)
        if staged.name != BUNDLE_ARTIFACT:
            staged = Path(shutil.copytree(bundle_dir, Path(tmp) / BUNDLE_ARTIFACT))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_FILE),
            artifacts={BUNDLE_ARTIFACT: str(staged)},
            pip_requirements=[f"streamvae=={__version__}"],
            registered_model_name=registered_model,
            signature=signature,
            input_example=input_example,
        )
    version = None if info.registered_model_version is None else str(info.registered_model_version)
    return info.model_uri, version


def log_run_metrics(run_id: str, metrics: Mapping[str, float]) -> None:
    """Log ``metrics`` to an existing (finished) run, e.g. diagnostics after training."""
    client = MlflowClient()
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))


REPORT_ARTIFACT = "calibration_report"


def log_report(files: Sequence[Path], run_id: str | None = None) -> None:
    """Log report files under ``calibration_report/`` of ``run_id`` (else the active run)."""
    for path in files:
        if run_id is None:
            mlflow.log_artifact(str(path), artifact_path=REPORT_ARTIFACT)
        else:
            MlflowClient().log_artifact(run_id, str(path), artifact_path=REPORT_ARTIFACT)


def publish_report(report: CalibrationReport, tracking: TrackingSettings, stem: str) -> str:
    """Draw ``report`` and log it to the active run; returns where its PNG can be found.

    With a local store the files also stay under ``WORK_DIR/reports``; with a tracking server
    they live in the run only (nothing is written beside a remote store).
    """
    if tracking_uri(tracking).startswith("sqlite:"):
        files = write_report(report, Path(tracking.work_dir) / "reports", stem)
        log_report((files.png, files.html))
        return str(files.png)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_report(report, Path(tmp), stem)
        log_report((files.png, files.html))
    return str(mlflow.get_artifact_uri(f"{REPORT_ARTIFACT}/{files.png.name}"))


def set_alias(name: str, alias: str, version: str) -> None:
    """Point ``models:/name@alias`` at ``version``.

    Raises:
        ModelLoadError: unknown model or version.
    """
    try:
        MlflowClient().set_registered_model_alias(name, alias, version)
    except MlflowException as exc:
        msg = f"cannot set alias {alias!r} of model {name!r} to version {version!r}: {exc.message}"
        raise ModelLoadError(msg) from exc


def check_uri(uri: str) -> None:
    """Reject obviously malformed model URIs early (see :func:`streamvae.config.check_model_uri`).

    Raises:
        ConfigError: empty or malformed URI.
    """
    check_model_uri(uri)
