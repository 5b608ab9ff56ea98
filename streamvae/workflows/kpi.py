"""Train a KPI window model from historical series and calibrate per-series thresholds.

Each series is streamed through the same window state the consumer keeps (so training sees
exactly the windows serving will see: gaps masked, duplicates and out-of-order points
dropped). The first ``1 - calibration_fraction`` of every series trains one pooled model
(per-series robust scaling, masked ELBO, missing-point injection, calendar condition for
conditional families); the rest calibrates a percentile threshold per series, per group of
series, or one for all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from streamvae.bundle import ModelBundle
from streamvae.bundle.window import WindowDetector, WindowPreprocess
from streamvae.config import TrackingSettings, unknown_model_message
from streamvae.data.kpi_features import (
    CALENDAR_FEATURES,
    SeriesScaler,
    calendar_features,
    infer_interval_ms,
)
from streamvae.data.series_state import WindowSpec, replay
from streamvae.errors import DataError
from streamvae.models import config_from_dict, model_spec, with_params
from streamvae.scoring.stream_scores import StreamScoring
from streamvae.thresholds import CalibrationSpec, calibrate_set
from streamvae.tracking import Trained, TrainOutcome, point_signature, train_in_run
from streamvae.training import TrainConfig, TrainingCallback
from streamvae.types import KPI_MODELS, WINDOW_SCORE_KINDS, ScoreKind
from streamvae.workflows.fitting import fit_bundle

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
ThresholdBy = Literal["series", "group", "all"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KpiSettings:
    """How to train and calibrate a KPI window model.

    Attributes:
        model: registry key (``vae``, ``conv1d_vae``; ``cvae``, ``dcvae``, ``conv1d_cvae``
            read hour of day and day of week).
        window_len: points per window.
        interval_ms: sampling interval (default: the median gap of the data).
        min_observed: least share of observed points for a window to be scored.
        latent_dim: latent size.
        hidden_dims: hidden widths.
        epochs: epoch budget (early stopping on a validation split).
        batch_size: mini-batch size.
        missing_injection: share of points marked missing per training batch.
        hide_last: share of training windows whose newest point the encoder does not see
            (the model learns to predict it, as scoring asks).
        calibration_fraction: the newest share of each series held out to calibrate.
        percentile: calibration percentile of normal scores.
        threshold_by: one threshold per ``series``, per ``group`` (the series id up to
            ``group_separator``), or one for ``all``.
        group_separator: separates the group from the rest of a series id.
        score_kind: ``stream`` (the default: the newest point's residual and its window's
            novelty as tail surprises against the series' own recent history, one score per
            incident, the same meaning on every series), ``last_point`` (the newest point
            vs its expectation) or ``window_neg_elbo``.
        stream: the ``stream`` score's settings.
        seed: training seed.
        device: ``auto``, ``cpu`` or ``cuda``.
        params: the family's own hyper-parameters (``ModelSpec.params``, e.g. conv1d_vae's
            ``kernel_size``).
    """

    model: str = "vae"
    window_len: int = 32
    interval_ms: int | None = None
    min_observed: float = 0.5
    latent_dim: int = 4
    hidden_dims: tuple[int, ...] = (64, 32)
    epochs: int = 100
    batch_size: int = 64
    missing_injection: float = 0.01
    hide_last: float = 0.5
    calibration_fraction: float = 0.2
    percentile: float = 99.5
    threshold_by: ThresholdBy = "series"
    group_separator: str = "."
    score_kind: ScoreKind = "stream"
    stream: StreamScoring = field(default_factory=StreamScoring)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in KPI_MODELS:
            raise ValueError(unknown_model_message(self.model, "KPI", KPI_MODELS))
        # a param the family does not take, or a value its config refuses (even kernel_size)
        conditional = model_spec(self.model).conditional
        config_from_dict(self.model, model_values(self, conditional=conditional))
        if not 0.0 < self.calibration_fraction < 1.0:
            msg = f"calibration_fraction must be in (0, 1), got {self.calibration_fraction}"
            raise ValueError(msg)
        if not 0.0 < self.percentile < 100.0:
            msg = f"percentile must be in (0, 100), got {self.percentile}"
            raise ValueError(msg)
        if self.threshold_by not in ("series", "group", "all"):
            msg = f"threshold_by must be series, group or all, got {self.threshold_by!r}"
            raise ValueError(msg)
        if self.score_kind not in WINDOW_SCORE_KINDS:
            msg = (
                f"a KPI model scores stream, last_point or window_neg_elbo, not {self.score_kind!r}"
            )
            raise ValueError(msg)


Series = Mapping[str, tuple[I64, F64]]


def read_series(
    path: str | Path,
    *,
    series_column: str = "series",
    ts_column: str = "timestamp",
    value_column: str = "value",
) -> dict[str, tuple[I64, F64]]:
    """Read long-format KPI history (one row per point) from CSV or Parquet with polars.

    Timestamps may be epoch milliseconds or date-time text. Rows keep their order within a
    series (the window state drops points that go back in time, as the consumer would).

    Raises:
        DataError: unreadable file or missing columns.
    """
    source = Path(path)
    try:
        frame = (
            pl.read_parquet(source)
            if source.suffix in (".parquet", ".pq")
            else pl.read_csv(source, schema_overrides={series_column: pl.Utf8})
        )
    except (OSError, pl.exceptions.PolarsError) as exc:
        msg = f"cannot read KPI history {str(source)!r}: {exc}"
        raise DataError(msg) from exc
    missing = [c for c in (series_column, ts_column, value_column) if c not in frame.columns]
    if missing:
        msg = f"{str(source)!r} lacks column(s) {missing}; has {frame.columns}"
        raise DataError(msg)
    ts = frame[ts_column]
    if ts.dtype == pl.Utf8:
        ts = ts.str.to_datetime(time_unit="ms", strict=False)
    if ts.dtype.is_temporal():
        ts = ts.cast(pl.Datetime("ms")).dt.epoch(time_unit="ms")
    frame = frame.with_columns(
        ts.cast(pl.Int64).alias("_ts"), pl.col(value_column).cast(pl.Float64).alias("_value")
    )
    if frame["_ts"].null_count():
        msg = f"{str(source)!r}: {frame['_ts'].null_count()} unreadable timestamp(s)"
        raise DataError(msg)
    out: dict[str, tuple[I64, F64]] = {}
    for (name,), part in frame.group_by(series_column, maintain_order=True):
        out[str(name)] = (part["_ts"].to_numpy(), part["_value"].fill_null(np.nan).to_numpy())
    return out


@dataclass(frozen=True, slots=True)
class _Windows:
    series: list[str]
    values: F64
    mask: F64
    end_ts: I64
    calibrate: npt.NDArray[np.bool_]


def _cuts(data: Series, fraction: float) -> dict[str, int]:
    """Per series, the last timestamp of its training part (later points calibrate)."""
    return {
        name: int(np.quantile(ts, 1.0 - fraction)) if ts.size else 0
        for name, (ts, _) in data.items()
    }


def _windows(data: Series, spec: WindowSpec, cuts: dict[str, int]) -> _Windows:
    names: list[str] = []
    values: list[F64] = []
    masks: list[F64] = []
    ends: list[int] = []
    calibrate: list[bool] = []
    for name, (ts, vals) in data.items():
        cut = cuts[name]
        observed = np.isfinite(vals)  # a missing value is a gap
        names_of = [name] * int(observed.sum())
        for push in replay(spec, names_of, ts[observed].tolist(), vals[observed].tolist()):
            if push.status == "ready" and push.values is not None and push.mask is not None:
                names.append(name)
                values.append(push.values)
                masks.append(push.mask)
                ends.append(push.end_ts)
                calibrate.append(push.end_ts > cut)
    if not names:
        msg = f"no series yields a full window of {spec.window_len} points"
        raise DataError(msg)
    return _Windows(
        names, np.stack(values), np.stack(masks), np.array(ends, np.int64), np.array(calibrate)
    )


def _scalers(data: Series, cuts: dict[str, int]) -> tuple[dict[str, SeriesScaler], SeriesScaler]:
    scalers: dict[str, SeriesScaler] = {}
    for name, (ts, vals) in data.items():
        train = vals[(ts <= cuts[name]) & np.isfinite(vals)]
        if train.size:
            scalers[name] = SeriesScaler.fit(train)
    if not scalers:
        msg = "no series has an observed value to scale by"
        raise DataError(msg)
    fallback = SeriesScaler(
        float(np.median([s.center for s in scalers.values()])),
        float(np.median([s.scale for s in scalers.values()])),
    )
    return scalers, fallback


def model_values(settings: KpiSettings, *, conditional: bool) -> dict[str, Any]:
    """The window model's config values: the window, the settings, the family's params.

    Raises:
        ValueError: a param the family does not take, or one with a setting of its own.
    """
    values: dict[str, Any] = {
        "input_dim": settings.window_len,
        "latent_dim": settings.latent_dim,
        "hidden_dims": settings.hidden_dims,
    }
    if conditional:
        values["cond_numeric"] = len(CALENDAR_FEATURES)
    return with_params(settings.model, values, settings.params)


def train_kpi(
    data: Series,
    settings: KpiSettings,
    callbacks: list[TrainingCallback] | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> ModelBundle:
    """Train, calibrate and assemble a KPI window bundle from ``series -> (ts_ms, values)``.

    Raises:
        DataError: too little data (no full window, no calibration window).
    """
    if not data:
        msg = "no KPI series to train on"
        raise DataError(msg)
    interval = settings.interval_ms or int(
        np.median([infer_interval_ms(np.sort(ts)) for ts, _ in data.values() if ts.size > 1])
    )
    spec = WindowSpec(
        window_len=settings.window_len, interval_ms=interval, min_observed=settings.min_observed
    )
    conditional = model_spec(settings.model).conditional
    cuts = _cuts(data, settings.calibration_fraction)
    scalers, fallback = _scalers(data, cuts)
    stream = settings.stream if settings.score_kind == "stream" else None
    preprocess = WindowPreprocess(
        spec, scalers, fallback, calendar=conditional, group_separator=settings.group_separator,
        stream=stream,
    )  # fmt: skip
    win = _windows(data, spec, cuts)
    learn = ~win.calibrate
    if learn.sum() < 2 or win.calibrate.sum() < 1:
        msg = (
            f"need training and calibration windows; got {int(learn.sum())} and "
            f"{int(win.calibrate.sum())} (more history, or a smaller window_len)"
        )
        raise DataError(msg)
    config = config_from_dict(settings.model, model_values(settings, conditional=conditional))
    x, m = preprocess.scale(win.series, win.values, win.mask)
    cond = calendar_features(win.end_ts) if conditional else None
    train = TrainConfig(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        seed=settings.seed,
        device=settings.device,
        missing_injection=settings.missing_injection,
        hide_last=settings.hide_last,
        patience=20,
    )
    bundle, result = fit_bundle(
        settings.model, config, x[learn], train, preprocess, settings.score_kind,
        callbacks=callbacks, cond=None if cond is None else cond[learn], mask=m[learn],
        meta={
            "kind": "kpi",
            "series": len(data),
            "train_windows": int(learn.sum()),
            "calibration_windows": int(win.calibrate.sum()),
        },
    )  # fmt: skip
    if log is not None:
        log(f"trained {settings.model} on {int(learn.sum())} windows ({result.epochs_run} epochs)")
    detector = WindowDetector(bundle, device="cpu")
    cal_scores, cal_series = _calibration_scores(detector, win)
    field = None if settings.threshold_by == "all" else settings.threshold_by
    segments = None
    if field == "series":
        segments = cal_series
    elif field == "group":
        segments = [preprocess.group(s) for s in cal_series]
    try:
        thresholds, skipped = calibrate_set(
            cal_scores,
            CalibrationSpec(
                percentile=settings.percentile, segment_field=field, min_segment_size=50
            ),
            score_kind=settings.score_kind,
            segments=segments,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    if log is not None and skipped:
        log(f"{len(skipped)} series/group(s) use the default threshold: too few windows")
    return bundle.with_threshold(thresholds)


def _calibration_scores(detector: WindowDetector, win: _Windows) -> tuple[F64, list[str]]:
    """The calibration windows' scores and series.

    For the ``stream`` kind every window of a series goes through its scorer in time order
    (the training part warms the series' state, as a long-running service would be) and
    the calibration windows' *fused* scores (before suppression) are kept, so the threshold
    bounds the alert rate from above; windows still warming up are left out.

    Raises:
        DataError: no calibration window is ready.
    """
    if not detector.streaming:
        cal = np.flatnonzero(win.calibrate)
        series = [win.series[i] for i in cal]
        scored = detector.score(series, win.values[cal], win.mask[cal], win.end_ts[cal])
        return detector.select(scored), series
    scored = detector.score(win.series, win.values, win.mask, win.end_ts)
    decided = detector.decide_scores(scored, win.series, detector.new_scorers())
    keep = np.flatnonzero(win.calibrate & decided.ready)
    if keep.size == 0:
        minimum = detector.preprocess.stream.likelihood_min if detector.preprocess.stream else 0
        msg = (
            f"no calibration window of the stream score is ready: each series needs more than "
            f"{minimum} scored windows before its calibration part (more history)"
        )
        raise DataError(msg)
    return decided.parts["fused"][keep], [win.series[i] for i in keep]


def train_and_register(
    data: Series,
    settings: KpiSettings,
    tracking: TrackingSettings,
    callbacks: list[TrainingCallback] | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> TrainOutcome:
    """Train a KPI bundle, log it to MLflow (params, per-epoch metrics, thresholds), register it.

    Raises:
        DataError: too little data.
    """
    params = {f"kpi.{k}": v for k, v in asdict(settings).items()} | {"kpi.n_series": len(data)}

    def trained(cbs: list[TrainingCallback]) -> Trained:
        bundle = train_kpi(data, settings, cbs, log=log)
        meta = bundle.meta
        return Trained(bundle, int(meta["train_windows"]), int(meta["calibration_windows"]))

    return train_in_run(trained, params, tracking, callbacks, signature=point_signature())
