"""Operator workflows on a registered model: calibrate, show thresholds, evaluate, promote."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streamvae.bundle import ModelBundle, TabularDetector, TabularPreprocess
from streamvae.bundle.image import ImagePreprocess
from streamvae.config import TrackingSettings
from streamvae.data import Table, load_column, load_table
from streamvae.data.images import load_labelled_images
from streamvae.data.splits import shuffled, split_fraction
from streamvae.errors import ConfigError, DataError, ModelLoadError
from streamvae.reports import (
    CalibrationReport,
    ReportFiles,
    report_stem,
    threshold_facts,
    write_report,
)
from streamvae.scoring import DetectionReport, Diagnostics, detection_report, roc_auc
from streamvae.thresholds import (
    CalibrationSpec,
    PRCurve,
    ThresholdSet,
    calibrate_for_target,
    precision_recall_curve,
)
from streamvae.tracking import (
    ResolvedModel,
    configure,
    load_resolved,
    log_report,
    log_run_metrics,
    record_thresholds,
    resolve,
    set_alias,
)
from streamvae.types import ModelRef
from streamvae.workflows.images import PixelReport, evaluate_images
from streamvae.workflows.train import calibrate_scores, utc_now


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A resolved model and its bundle (thresholds included)."""

    ref: ModelRef
    bundle: ModelBundle


def _load(uri: str, tracking: TrackingSettings, tmp: Path) -> tuple[LoadedModel, ResolvedModel]:
    configure(tracking)
    resolved = resolve(uri, tmp)
    return LoadedModel(resolved.ref, load_resolved(resolved)), resolved


def _table_for(bundle: ModelBundle, path: str | Path, label_column: str) -> Table:
    """The model's feature columns of ``path``, in schema order, all finite.

    Raises:
        DataError: a KPI window model (it reads series, not feature rows).
    """
    preprocess = bundle.preprocess
    if isinstance(preprocess, ImagePreprocess):
        msg = "this is an image model: it reads images (an .npz or image folders), not rows"
        raise DataError(msg)
    if not isinstance(preprocess, TabularPreprocess):
        msg = "this is a KPI window model: benchmark it with `streamvae bench nab`"
        raise DataError(msg)
    names = preprocess.schema.names
    context = preprocess.context
    table = load_table(
        path,
        label_column=label_column,
        feature_columns=names,
        context_columns=() if context is None else context.names,
    )
    bad = ~np.isfinite(table.features)
    if bad.any():
        columns = [names[i] for i in np.flatnonzero(bad.any(axis=0))]
        msg = f"{str(path)!r}: {int(bad.any(axis=1).sum())} row(s) hold NaN or Inf in {columns[:5]}"
        raise DataError(msg)
    return table


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationRequest:
    """What the operator asked ``calibrate`` for.

    Attributes:
        spec: percentile or target rate, tail model, intervals, segments, severity bands.
        label_column: label column of the data (rows labelled 1 are never calibrated on).
        holdout_fraction: share of the normal rows kept out to measure the realised
            false-positive rate (0: calibrate on all of them and report none).
        seed: seeds the hold-out split.
        target_precision: label-aware: the threshold reaching this precision.
        target_recall: label-aware: the threshold reaching this recall.
    """

    spec: CalibrationSpec
    label_column: str = "label"
    holdout_fraction: float = 0.2
    seed: int = 0
    target_precision: float | None = None
    target_recall: float | None = None

    @property
    def label_aware(self) -> bool:
        """True when a precision or recall target picks the threshold."""
        return self.target_precision is not None or self.target_recall is not None


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    """Calibrated thresholds, not yet recorded, and what they mean for normal traffic."""

    model: ModelRef
    resolved: ResolvedModel
    thresholds: ThresholdSet
    n_normal: int
    n_anomalies: int
    n_holdout: int
    holdout_fpr: float | None
    skipped_segments: dict[str, str] = field(default_factory=dict)
    pr_curve: PRCurve | None = None
    labelled_report: DetectionReport | None = None
    normal_scores: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    anomaly_scores: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    def alerts_per_day(self, records_per_second: float) -> float:
        """Expected alerts a day on normal traffic at ``records_per_second``."""
        return self.thresholds.default.expected_alert_rate * records_per_second * 86_400.0


def prepare_calibration(
    uri: str, data: str | Path, request: CalibrationRequest, *, tracking: TrackingSettings
) -> CalibrationResult:
    """Calibrate ``uri`` on ``data`` without recording anything (see :func:`commit_calibration`).

    Raises:
        ConfigError, DataError, ModelLoadError: bad request, data or model.
    """
    with tempfile.TemporaryDirectory() as tmp:
        loaded, resolved = _load(uri, tracking, Path(tmp))
        table = _table_for(loaded.bundle, data, request.label_column)
        field_name = request.spec.segment_field
        segments = None if field_name is None else load_column(data, field_name)
        detector = TabularDetector(loaded.bundle)
        scores = detector.select(detector.score_table(table))
    labels = table.labels if table.labels is not None else np.zeros(len(table), np.int8)
    if request.label_aware:
        return _label_aware(loaded, resolved, scores, labels, request)
    normal = np.flatnonzero(labels == 0)
    cal, hold = split_fraction(
        normal[shuffled(normal.size, request.seed)], request.holdout_fraction
    )
    seg = None if segments is None else [segments[i] for i in cal]
    thresholds, skipped = calibrate_scores(scores[cal], request.spec, loaded.bundle.score_kind, seg)
    holdout_fpr = None
    if hold.size:
        seg_hold = None if segments is None else [segments[i] for i in hold]
        holdout_fpr = float(np.mean(thresholds.decide(scores[hold], seg_hold).severities != ""))
    report = None
    if labels.any():
        report = detection_report(labels, scores, thresholds.default.value)
    return CalibrationResult(
        loaded.ref, resolved, thresholds.for_model(loaded.ref.name, loaded.ref.version),
        n_normal=int(normal.size), n_anomalies=int(labels.sum()), n_holdout=int(hold.size),
        holdout_fpr=holdout_fpr, skipped_segments=skipped,
        pr_curve=precision_recall_curve(labels, scores) if labels.any() else None,
        labelled_report=report, normal_scores=scores[cal], anomaly_scores=scores[labels == 1],
    )  # fmt: skip


def _label_aware(
    loaded: LoadedModel, resolved: ResolvedModel, scores: np.ndarray, labels: np.ndarray,
    request: CalibrationRequest,
) -> CalibrationResult:  # fmt: skip
    if request.spec.segment_field is not None:
        msg = "label-aware tuning (--target-precision/--target-recall) does not take --segment"
        raise ConfigError(msg)
    try:
        threshold = calibrate_for_target(
            labels, scores, score_kind=loaded.bundle.score_kind, created_at=utc_now(),
            target_precision=request.target_precision, target_recall=request.target_recall,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    thresholds = ThresholdSet(
        default=threshold,
        severity_bands=request.spec.severity_bands,
        reference={"": np.sort(scores[labels == 0])},
    ).for_model(loaded.ref.name, loaded.ref.version)
    return CalibrationResult(
        loaded.ref, resolved, thresholds, n_normal=int((labels == 0).sum()),
        n_anomalies=int(labels.sum()), n_holdout=0, holdout_fpr=None,
        pr_curve=precision_recall_curve(labels, scores),
        labelled_report=detection_report(labels, scores, threshold.value),
        normal_scores=scores[labels == 0], anomaly_scores=scores[labels == 1],
    )  # fmt: skip


def commit_calibration(result: CalibrationResult) -> ThresholdSet:
    """Record the thresholds with the exact model version they were calibrated on."""
    return record_thresholds(result.resolved, result.thresholds)


def write_calibration_report(
    result: CalibrationResult, directory: Path, facts: Mapping[str, str], *, log: bool
) -> ReportFiles:
    """Draw the calibration report (PNG + HTML) into ``directory``; log it to the version's run.

    Args:
        result: the calibration.
        directory: where the files go (``<name>-v<version>-calibration.png/.html``).
        facts: the labelled figures of the HTML table (the CLI passes what it printed);
            empty: the threshold's own figures.
        log: also log the files to the model's MLflow run (``calibration_report/``).
    """
    ref, default = result.model, result.thresholds.default
    report = CalibrationReport(
        title=f"Calibration of {ref.name or 'model'} v{ref.version} ({default.score_kind})",
        threshold=default,
        normal_scores=result.normal_scores,
        anomaly_scores=result.anomaly_scores if result.anomaly_scores.size else None,
        pr_curve=result.pr_curve,
        facts=dict(facts) or threshold_facts(default),
    )
    files = write_report(report, directory, report_stem(ref.name, ref.version))
    if log and result.resolved.run_id is not None:
        log_report((files.png, files.html), result.resolved.run_id)
    return files


def show_thresholds(uri: str, *, tracking: TrackingSettings) -> tuple[ModelRef, ThresholdSet]:
    """The thresholds in force for ``uri``.

    Raises:
        NotCalibratedError: the model has none.
    """
    with tempfile.TemporaryDirectory() as tmp:
        loaded, _ = _load(uri, tracking, Path(tmp))
    return loaded.ref, TabularDetector(loaded.bundle).threshold


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """Detection quality of a model on labelled data.

    Attributes:
        model: the model evaluated.
        thresholds: its thresholds (the default one applies).
        report: image- or row-level AUROC, AP and precision/recall/F1 at the threshold.
        localisation: an image model's pixel-level figures, when the data has masks.
    """

    model: ModelRef
    thresholds: ThresholdSet
    report: DetectionReport
    localisation: PixelReport | None = None

    def to_dict(self) -> dict[str, object]:
        """The printed values: the model, the report, the pixel figures."""
        values: dict[str, object] = {"model": f"{self.model.name} v{self.model.version}"}
        values |= self.report.to_dict()
        if self.localisation is not None:
            values |= self.localisation.to_dict()
        return values


def evaluate(
    uri: str,
    data: str | Path,
    *,
    tracking: TrackingSettings,
    label_column: str = "label",
    normal_label: int | None = None,
) -> EvaluationResult:
    """Score labelled ``data`` with ``uri`` and report AUROC, AP, precision/recall/F1.

    The default threshold applies (segments are not looked up in offline data). An image
    model reads labelled images (see :func:`~streamvae.data.images.load_labelled_images`)
    and, when they come with pixel masks, also reports the pixel AUROC of its map.

    Args:
        uri: the model.
        data: feature rows with a label column; for an image model an ``.npz`` (``X``,
            ``y``, optional ``masks``) or a folder of label folders.
        tracking: the MLflow store.
        label_column: the label column of feature rows (1 = anomaly).
        normal_label: image labels: the label of the normal class (others are
            anomalies); unset, labels must be 0/1.

    Raises:
        DataError: the data has no labels, or does not fit the model.
        NotCalibratedError: the model has no threshold.
    """
    with tempfile.TemporaryDirectory() as tmp:
        loaded, _ = _load(uri, tracking, Path(tmp))
        if isinstance(loaded.bundle.preprocess, ImagePreprocess):
            images = load_labelled_images(data, normal_label=normal_label)
            evaluation = evaluate_images(loaded.bundle, images)
            return EvaluationResult(
                loaded.ref, evaluation.thresholds, evaluation.report, evaluation.localisation
            )
        table = _table_for(loaded.bundle, data, label_column)
        if table.labels is None:
            msg = f"{str(data)!r} has no labels (column {label_column!r}, or 'y' in an .npz)"
            raise DataError(msg)
        detector = TabularDetector(loaded.bundle)
        thresholds = detector.threshold
        scores = detector.select(detector.score_table(table))
    report = detection_report(table.labels, scores, thresholds.default.value)
    return EvaluationResult(loaded.ref, thresholds, report)


def promote(uri: str, alias: str, *, tracking: TrackingSettings) -> ModelRef:
    """Point ``models:/NAME@alias`` at the registered version behind ``uri``.

    Refuses a version without a calibrated threshold: the service would not serve it.

    Raises:
        ModelLoadError: not a registered model, or not calibrated.
    """
    if not uri.startswith("models:/"):
        msg = f"promote needs a registered model URI (models:/NAME/VERSION), got {uri!r}"
        raise ModelLoadError(msg)
    with tempfile.TemporaryDirectory() as tmp:
        loaded, _ = _load(uri, tracking, Path(tmp))
    if loaded.bundle.threshold is None:
        msg = f"{uri} has no calibrated threshold: run `streamvae calibrate {uri} DATA` first"
        raise ModelLoadError(msg)
    set_alias(loaded.ref.name, alias, loaded.ref.version)
    return ModelRef(
        loaded.ref.name, loaded.ref.version, alias, f"models:/{loaded.ref.name}@{alias}"
    )


@dataclass(frozen=True, slots=True)
class DiagnosisResult:
    """Latent diagnostics of a model on some data, plus its score separation when labelled."""

    model: ModelRef
    diagnostics: Diagnostics
    n_rows: int
    auroc: dict[str, float] = field(default_factory=dict)


def diagnose(
    uri: str,
    data: str | Path,
    *,
    tracking: TrackingSettings,
    label_column: str = "label",
    log: bool = False,
    seed: int = 0,
) -> DiagnosisResult:
    """Latent diagnostics of ``uri`` on ``data``, and every score's AUROC when labelled.

    Per-dimension KL, active dimensions, MMD to the prior, reconstruction MSE and, with
    labels, the normal-vs-abnormal latent distance.

    Args:
        uri: the model.
        data: CSV/Parquet/NPZ rows (labels optional).
        tracking: the MLflow store.
        label_column: the label column, when the data has one.
        log: also log the figures as metrics (``diagnose_*``) to the model's MLflow run.
        seed: seeds the posterior samples and the MMD's prior draws.

    Raises:
        ModelLoadError: ``log`` for a model without an MLflow run (a local bundle).
    """
    with tempfile.TemporaryDirectory() as tmp:
        loaded, resolved = _load(uri, tracking, Path(tmp))
        table = _table_for(loaded.bundle, data, label_column)
        detector = TabularDetector(loaded.bundle)
        diagnostics = detector.diagnose(table, seed=seed)
        auroc: dict[str, float] = {}
        if table.labels is not None and 0 < int(table.labels.sum()) < len(table):
            scores = detector.score_table(table, sampled=True).scores
            auroc = {
                kind: roc_auc(table.labels, scores.select(kind)) for kind in scores.available()
            }
    if log:
        if resolved.run_id is None:
            msg = f"{uri} has no MLflow run to log to (a local bundle directory?)"
            raise ModelLoadError(msg)
        metrics = diagnostics.metrics("diagnose_") | {
            f"diagnose_auroc_{k}": v for k, v in auroc.items()
        }
        log_run_metrics(resolved.run_id, metrics)
    return DiagnosisResult(loaded.ref, diagnostics, len(table), auroc)
