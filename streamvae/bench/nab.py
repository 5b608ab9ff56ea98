"""Evaluate streamvae the NAB way: stream each file in order, learning as it goes.

For every file, in order: place the points on their sampling grid (gaps become masked
slots), fit a robust scaler and a window VAE on the probationary windows (masked ELBO,
missing-point injection), score the newest point of every window (its residual from the
model's expectation), and turn it, point by point, into an anomaly score in [0, 1] with
:class:`~streamvae.scoring.stream_scores.SeriesScorer`: the residual's tail surprise
against the series' own recent residuals, fused with the novelty of the window against the
series' recent history (which keeps learning after the probationary period), one score per
incident. The scorer only ever looks back, so every point's score is what a live stream
would have produced at that point; the probationary points feed it but score 0.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from streamvae.bundle import ModelBundle
from streamvae.bundle.window import WindowDetector, WindowPreprocess
from streamvae.data.kpi_features import SeriesScaler, calendar_features, infer_interval_ms
from streamvae.data.nab import NabFile
from streamvae.data.series_state import Push, WindowSpec, replay
from streamvae.models import config_from_dict, model_spec
from streamvae.scoring.nab import NAB_PROFILES, CorpusScore, probationary_length, score_corpus
from streamvae.scoring.stream_scores import StreamScoring
from streamvae.training import TrainConfig
from streamvae.workflows.fitting import fit_bundle

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class NabSettings:
    """How streamvae runs on NAB.

    Attributes:
        model: registry key of the window model (``vae``, ``conv1d_vae``; the conditional
            ``cvae``, ``dcvae``, ``conv1d_cvae`` read the calendar features).
        window_len: points per window (capped at a sixth of the probationary period).
        latent_dim: latent size.
        hidden_dims: hidden widths.
        epochs: training epochs (early stopping, patience 20).
        missing_injection: share of points marked missing in each training batch.
        hide_last: score the newest point from the rest of its window (see
            :func:`~streamvae.scoring.windows.score_windows`).
        train_hide_last: share of training windows whose newest point the encoder does not
            see (the model learns to predict it, as scoring asks).
        ensemble: models trained with seeds ``seed, seed + 1, ...``; their residuals are
            averaged before the stream score (1, the default, is exactly what ``serve`` does
            with the bundle of :func:`file_bundle`).
        seed: training seed of the first model.
        device: ``auto``, ``cpu`` or ``cuda``.
        stream: how raw scores become comparable anomaly scores as the stream goes.
    """

    model: str = "vae"
    window_len: int = 32
    latent_dim: int = 4
    hidden_dims: tuple[int, ...] = (64, 32)
    epochs: int = 100
    missing_injection: float = 0.01
    hide_last: bool = True
    train_hide_last: float = 0.5
    ensemble: int = 1
    seed: int = 0
    device: str = "cpu"
    stream: StreamScoring = field(default_factory=StreamScoring)

    def __post_init__(self) -> None:
        model_spec(self.model)  # raises KeyError for an unknown family
        if self.window_len < 2 or self.epochs < 1:
            msg = f"invalid NAB settings window_len={self.window_len}, epochs={self.epochs}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class FileResult:
    """One file's per-point output.

    Attributes:
        file: the series.
        anomaly_score: ``(n,)`` the emitted score in [0, 1] (0 in the probationary period).
        raw_score: ``(n,)`` the model's residual of each point (NaN where not scored).
        fused: ``(n,)`` the fused surprise before one-score-per-incident suppression.
        window_len: points per window.
        epochs_run: training epochs, summed over the ensemble.
    """

    file: NabFile
    anomaly_score: F64
    raw_score: F64
    fused: F64
    window_len: int
    epochs_run: int


@dataclass(frozen=True, slots=True)
class NabReport:
    """Per-file results and the corpus score of every NAB profile."""

    results: tuple[FileResult, ...]
    profiles: dict[str, CorpusScore] = field(default_factory=dict)


def _model_values(settings: NabSettings, window_len: int, conditional: bool) -> dict[str, object]:
    values: dict[str, object] = {
        "input_dim": window_len,
        "latent_dim": settings.latent_dim,
        "hidden_dims": settings.hidden_dims,
    }
    if conditional:
        values["cond_numeric"] = 4
    return values


def stream_windows(file: NabFile, spec: WindowSpec) -> tuple[list[Push], npt.NDArray[np.intp]]:
    """Push every point of ``file`` in file order through the consumer's window state.

    Returns:
        Each point's :class:`Push`, and the row indices whose window is ready.
    """
    names = [file.name] * len(file)
    pushes = replay(spec, names, file.timestamps_ms.tolist(), file.values.tolist())
    ready = np.array([i for i, p in enumerate(pushes) if p.status == "ready"], np.intp)
    return pushes, ready


class FileWindows(NamedTuple):
    """A file's points pushed through the consumer's window state, once.

    Attributes:
        spec: the window spec (length capped at a sixth of the probationary period).
        probation: the probationary length.
        pushes: each point's :class:`Push`.
        ready: the row indices whose window is ready, in file order.
    """

    spec: WindowSpec
    probation: int
    pushes: list[Push]
    ready: npt.NDArray[np.intp]

    def batch(self, rows: npt.NDArray[np.intp]) -> tuple[F64, F64, npt.NDArray[np.int64]]:
        """``(values, mask, end_ts)`` of the windows of ``rows``."""
        return (
            np.stack([self.pushes[i].values for i in rows]),
            np.stack([self.pushes[i].mask for i in rows]),
            np.array([self.pushes[i].end_ts for i in rows], np.int64),
        )


def file_windows(file: NabFile, settings: NabSettings) -> FileWindows:
    """Place ``file``'s points on their grid and window them as the consumer would."""
    probation = probationary_length(len(file))
    window_len = max(2, min(settings.window_len, probation // 6))
    spec = WindowSpec(window_len=window_len, interval_ms=infer_interval_ms(file.timestamps_ms))
    pushes, ready = stream_windows(file, spec)
    return FileWindows(spec, probation, pushes, ready)


def file_bundle(
    file: NabFile,
    settings: NabSettings,
    member: int = 0,
    windows: FileWindows | None = None,
    rows: npt.NDArray[np.intp] | None = None,
) -> tuple[ModelBundle, int]:
    """Train the window bundle NAB scores ``file`` with: its probationary windows only.

    The bundle is what ``streamvae serve`` would load: the file's robust scaler keyed by
    the file's name (its series id), the window spec, the model, and the ``stream`` score.
    It carries no threshold (NAB optimises one over the corpus).

    Args:
        file: the series.
        settings: how NAB runs.
        member: ensemble member (its seed is ``settings.seed + member``).
        windows: :func:`file_windows` of ``file`` when the caller has them already.
        rows: the ready rows whose windows to learn from instead of the probationary ones
            (a refit; the scaler stays the probationary part's).

    Returns:
        The bundle, and the training epochs run.
    """
    win = file_windows(file, settings) if windows is None else windows
    preprocess = WindowPreprocess(
        win.spec,
        {file.name: SeriesScaler.fit(file.values[: win.probation])},
        calendar=model_spec(settings.model).conditional,
        stream=settings.stream,
    )
    learn = win.ready[win.ready < win.probation] if rows is None else rows
    raw, mask, end_ts = win.batch(learn)
    values, mask32 = preprocess.scale([file.name] * learn.size, raw, mask)
    cond = calendar_features(end_ts) if preprocess.calendar else None
    window_len = win.spec.window_len
    config = config_from_dict(settings.model, _model_values(settings, window_len, cond is not None))
    train = TrainConfig(
        epochs=settings.epochs,
        batch_size=64,
        patience=20,
        seed=settings.seed + member,
        device="cuda" if settings.device == "cuda" else "cpu",
        missing_injection=settings.missing_injection,
        hide_last=settings.train_hide_last,
    )
    bundle, result = fit_bundle(
        settings.model, config, values, train, preprocess, "stream", cond=cond, mask=mask32,
        meta={"kind": "kpi", "nab_file": file.name, "train_windows": int(learn.size)},
    )  # fmt: skip
    return bundle, result.epochs_run


def run_file(file: NabFile, settings: NabSettings) -> FileResult:
    """Learn from ``file``'s probationary points, then score every point in stream order.

    The points go through the same window state, detector and per-series stream score
    (:meth:`~streamvae.bundle.window.WindowDetector.decide_scores`) as the streaming
    service (duplicates and out-of-order points are not scored: anomaly score 0). With
    ``ensemble > 1`` the members' residuals are averaged before the stream score; with one
    model (the default) every score is exactly what ``serve`` emits for the bundle of
    :func:`file_bundle`.
    """
    win = file_windows(file, settings)
    names = [file.name] * win.ready.size
    batch = win.batch(win.ready)
    members = []
    epochs_run = 0
    for member in range(settings.ensemble):
        bundle, epochs = file_bundle(file, settings, member, win)
        detector = WindowDetector(bundle, device="cpu")
        members.append(detector.score(names, *batch))
        epochs_run += epochs
    residual = np.mean([scored.last_point for scored in members], axis=0)
    scored = members[0]._replace(last_point=residual)
    decided = detector.decide_scores(scored, names, detector.new_scorers())
    n = len(file)
    raw, anomaly, fused = np.full(n, np.nan), np.zeros(n), np.zeros(n)
    raw[win.ready] = residual
    anomaly[win.ready], fused[win.ready] = decided.score, decided.parts["fused"]
    anomaly[: win.probation] = 0.0  # the detector is only learning there
    return FileResult(file, anomaly, raw, fused, win.spec.window_len, epochs_run)


def evaluate_nab(
    files: list[NabFile],
    settings: NabSettings,
    progress: Callable[[FileResult], None] | None = None,
) -> NabReport:
    """Run every file and score the corpus with each NAB profile (optimised thresholds)."""
    results = []
    for file in files:
        result = run_file(file, settings)
        results.append(result)
        if progress is not None:
            progress(result)
    specs = [(r.file.name, len(r.file), r.file.windows) for r in results]
    scores = [r.anomaly_score for r in results]
    profiles = {
        name: score_corpus(specs, scores, profile) for name, profile in NAB_PROFILES.items()
    }
    return NabReport(tuple(results), profiles)


def write_results(report: NabReport, out: str | Path, detector: str = "streamvae") -> list[Path]:
    """Write NAB's results layout: ``OUT/<detector>/<category>/<detector>_<file>.csv``.

    Each CSV has ``timestamp,value,anomaly_score,label`` (label 1 inside a window), the
    anomaly scores in [0, 1], so NAB's own scorer can check the numbers.
    """
    written: list[Path] = []
    for result in report.results:
        relative = Path(result.file.name)
        target = Path(out) / detector / relative.parent / f"{detector}_{relative.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        stamps = np.datetime_as_string(result.file.timestamps, unit="s")
        labels = result.file.labels()
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["timestamp", "value", "anomaly_score", "label"])
            for t, v, a, y in zip(
                stamps, result.file.values, result.anomaly_score, labels, strict=True
            ):
                writer.writerow([str(t).replace("T", " "), repr(float(v)), f"{a:.6f}", int(y)])
        written.append(target)
    return written


def report_dict(report: NabReport) -> dict[str, object]:
    """The report as plain values (``--json``)."""
    return {
        name: {
            "threshold": corpus.threshold,
            "normalized": corpus.normalized,
            "raw": corpus.raw,
            "files": {
                f.name: {
                    "normalized": f.normalized,
                    "raw": f.raw,
                    "tp": f.tp,
                    "fp": f.fp,
                    "fn": f.fn,
                }
                for f in corpus.files
            },
        }
        for name, corpus in report.profiles.items()
    }


def format_report(report: NabReport) -> str:
    """The per-file and overall scores of every profile, as a text table."""
    names = list(report.profiles)
    header = f"{'file':<52}" + "".join(f"{n:>20}" for n in names)
    lines = [header, "-" * len(header)]
    for i, result in enumerate(report.results):
        cells = []
        for name in names:
            score = report.profiles[name].files[i]
            norm = score.normalized
            cells.append(f"{(f'{norm:.1f}' if norm is not None else 'n/a'):>12} ({score.raw:+.2f})")
        lines.append(f"{result.file.name:<52}" + "".join(f"{c:>20}" for c in cells))
    lines.append("-" * len(header))
    totals = "".join(f"{report.profiles[n].normalized:>20.1f}" for n in names)
    lines.append(f"{'overall (normalised 0-100)':<52}" + totals)
    thresholds = "".join(f"{report.profiles[n].threshold:>20.4f}" for n in names)
    lines.append(f"{'threshold (optimised)':<52}" + thresholds)
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class FileDiagnosis:
    """Why a file scores what it scores, at one profile's corpus threshold.

    Attributes:
        name: the file.
        outside: ``(median, 99th percentile, max)`` of the fused score outside the windows,
            after the probationary period.
        inside: ``max`` of the fused score inside each window.
        first_detection: per window, the position of its first detection as a share of the
            window (0.0 its first point, 1.0 its last), ``None`` when it was missed.
        false_positives: detections outside every window.
    """

    name: str
    outside: tuple[float, float, float]
    inside: tuple[float, ...]
    first_detection: tuple[float | None, ...]
    false_positives: int


def diagnose(report: NabReport, profile: str = "standard") -> list[FileDiagnosis]:
    """Per file: fused scores inside vs outside windows, first detections, false positives."""
    threshold = report.profiles[profile].threshold
    out: list[FileDiagnosis] = []
    for result in report.results:
        n = len(result.file)
        scored = np.arange(n) >= probationary_length(n)
        labels = result.file.labels().astype(bool)
        fused = np.nan_to_num(result.fused)
        outside = fused[scored & ~labels]
        stats = (
            (float(np.median(outside)), float(np.quantile(outside, 0.99)), float(outside.max()))
            if outside.size
            else (0.0, 0.0, 0.0)
        )
        detections = result.anomaly_score >= threshold
        inside: list[float] = []
        first: list[float | None] = []
        for start, end in result.file.windows:
            span = slice(max(start, 0), end + 1)
            inside.append(float(fused[span].max()))
            hits = np.flatnonzero(detections[span] & scored[span])
            first.append(float(hits[0]) / max(end - start, 1) if hits.size else None)
        fp = int((detections & scored & ~labels).sum())
        out.append(FileDiagnosis(result.file.name, stats, tuple(inside), tuple(first), fp))
    return out


def format_diagnosis(diagnoses: list[FileDiagnosis], threshold: float) -> str:
    """The per-file diagnosis as a text table."""
    header = (
        f"{'file':<56}{'outside median / p99 / max':>28}  {'window max -> first detection':<40}"
        f"{'FP':>5}"
    )
    lines = [f"diagnosis at threshold {threshold:.4f} (fused score before suppression)", header]
    lines.append("-" * len(header))
    for d in diagnoses:
        outside = " / ".join(f"{v:.3f}" for v in d.outside)
        windows = ", ".join(
            f"{peak:.2f}->" + ("missed" if pos is None else f"{pos:.0%}")
            for peak, pos in zip(d.inside, d.first_detection, strict=True)
        )
        cells = f"{outside:>28}  {windows or '(no window)':<40}{d.false_positives:>5}"
        lines.append(f"{d.name:<56}{cells}")
    return "\n".join(lines)
