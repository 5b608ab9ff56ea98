"""KPI window bundles: the window spec, per-series scaling, and a detector over windows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from streamvae.bundle.model import load_model, thresholds_in_force
from streamvae.data.kpi_features import CALENDAR_FEATURES, SeriesScaler, calendar_features
from streamvae.data.series_state import WindowSpec, replay
from streamvae.errors import ModelLoadError
from streamvae.scoring.stream_scores import StreamScorers, StreamScoring
from streamvae.scoring.windows import score_windows
from streamvae.thresholds import ThresholdSet

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class WindowPreprocess:
    """How raw KPI points become model inputs.

    Attributes:
        spec: window length, sampling interval, gap and sparsity rules.
        scalers: robust scaling per series id seen in training.
        fallback: scaling for series the model has not seen (pooled over training series).
        calendar: the model is conditioned on hour of day and day of week of the newest
            point (the features of :func:`~streamvae.data.kpi_features.calendar_features`).
        utc_offset_ms: local time offset of the calendar features.
        group_separator: a series' group (for per-group thresholds) is its id up to the
            first separator.
        stream: how the ``stream`` score kind turns residuals into comparable anomaly scores
            as each series goes (``None`` in bundles made before it existed).
    """

    KIND: ClassVar[str] = "window"

    spec: WindowSpec
    scalers: Mapping[str, SeriesScaler] = field(default_factory=dict)
    fallback: SeriesScaler = field(default_factory=lambda: SeriesScaler(0.0, 1.0))
    calendar: bool = False
    utc_offset_ms: int = 0
    group_separator: str = "."
    stream: StreamScoring | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the window's inputs, oldest first (``t-(W-1)`` ... ``t``)."""
        n = self.spec.window_len
        return tuple(f"t-{n - 1 - i}" if i < n - 1 else "t" for i in range(n))

    @property
    def context_names(self) -> tuple[str, ...]:
        """The condition's fields (calendar features), if any."""
        return CALENDAR_FEATURES if self.calendar else ()

    def scaler(self, series: str) -> SeriesScaler:
        """The series' scaler, or the fallback for an unseen series."""
        return self.scalers.get(series, self.fallback)

    def group(self, series: str) -> str:
        """The group of a series id (its text up to the first separator)."""
        sep = self.group_separator
        return series.split(sep, 1)[0] if sep else series

    def scaling(self, series: Sequence[str]) -> tuple[F64, F64]:
        """``(centers (n,), scales (n,))`` of each series' scaler."""
        scalers = [self.scaler(s) for s in series]
        centers = np.array([sc.center for sc in scalers], np.float64)
        return centers, np.array([sc.scale for sc in scalers], np.float64)

    def scale(
        self, series: Sequence[str], values: F64, mask: F64, scaling: tuple[F64, F64] | None = None
    ) -> tuple[F32, F32]:
        """Scale raw windows ``(n, W)`` per series; missing slots stay 0."""
        centers, scales = self.scaling(series) if scaling is None else scaling
        scaled = (values - centers[:, None]) / scales[:, None] * mask
        return scaled.astype(np.float32), mask.astype(np.float32)

    def input_change(self, old: WindowPreprocess) -> str | None:
        """How these windows would be built differently from ``old``'s, or ``None``.

        The live windows are kept across a model swap, so the spec and the calendar
        conditioning must stay; the scaling and the stream settings may change.
        """
        if old.spec != self.spec:
            return f"window spec changed: {old.spec} -> {self.spec}"
        if old.calendar != self.calendar or old.utc_offset_ms != self.utc_offset_ms:
            return "calendar conditioning changed"
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        stream = {} if self.stream is None else {"stream": self.stream.to_dict()}
        return stream | {
            "kind": self.KIND,
            "group_separator": self.group_separator,
            "spec": self.spec.to_dict(),
            "scalers": {k: v.to_dict() for k, v in sorted(self.scalers.items())},
            "fallback": self.fallback.to_dict(),
            "calendar": self.calendar,
            "utc_offset_ms": self.utc_offset_ms,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WindowPreprocess:
        """Inverse of :meth:`to_dict`."""
        if values.get("kind") != cls.KIND:
            msg = f"unsupported preprocessing kind {values.get('kind')!r}"
            raise ValueError(msg)
        return cls(
            WindowSpec.from_dict(values["spec"]),
            {k: SeriesScaler.from_dict(v) for k, v in values.get("scalers", {}).items()},
            SeriesScaler.from_dict(values["fallback"]),
            bool(values.get("calendar", False)),
            int(values.get("utc_offset_ms", 0)),
            str(values.get("group_separator", ".")),
            StreamScoring.from_dict(values["stream"]) if "stream" in values else None,
        )


class ScoredWindows(NamedTuple):
    """Scores of a batch of windows, and the newest point's expectation in raw units.

    Attributes:
        last_point: ``(n,)`` ``|observed - expected|`` of the newest point, robust units.
        window_neg_elbo: ``(n,)`` masked negative ELBO of each window.
        expected: ``(n,)`` the model's expectation of the newest point, in series units.
        recon_nll: ``(n,)`` the reconstruction part of the ELBO.
        kl: ``(n,)`` the KL part.
        windows: ``(n, W)`` the scaled windows (missing slots 0), for the ``stream`` score.
    """

    last_point: F64
    window_neg_elbo: F64
    expected: F64
    recon_nll: F64
    kl: F64
    windows: F32

    def take(self, rows: npt.NDArray[np.intp]) -> ScoredWindows:
        """The scores of ``rows`` only."""
        return ScoredWindows(
            self.last_point[rows], self.window_neg_elbo[rows], self.expected[rows],
            self.recon_nll[rows], self.kl[rows], self.windows[rows],
        )  # fmt: skip

    def select(self, kind: str) -> F64:
        """The ``(n,)`` scores of ``kind`` (``last_point`` or ``window_neg_elbo``).

        Raises:
            ValueError: another kind.
        """
        if kind == "last_point":
            return self.last_point
        if kind == "window_neg_elbo":
            return self.window_neg_elbo
        if kind == "stream":
            msg = "the stream score needs each series' history: use WindowDetector.decide_scores"
            raise ValueError(msg)
        msg = f"a window model scores stream, last_point or window_neg_elbo, not {kind!r}"
        raise ValueError(msg)


class WindowDetector:
    """Scores raw KPI windows with a window bundle's model, deterministically (``z = mu``)."""

    def __init__(self, bundle: Any, *, device: str = "cpu") -> None:
        preprocess = bundle.preprocess
        if not isinstance(preprocess, WindowPreprocess):
            msg = "not a KPI window bundle (its preprocessing is not 'window')"
            raise ModelLoadError(msg)
        self.bundle = bundle
        self.preprocess: WindowPreprocess = preprocess
        model, config = load_model(bundle.model_key, bundle.model_config, bundle.state_dict)
        if config.input_dim != preprocess.spec.window_len:
            msg = f"window of {preprocess.spec.window_len} points, model input {config.input_dim}"
            raise ModelLoadError(msg)
        if model.conditional != preprocess.calendar:
            msg = f"model {bundle.model_key!r} and the bundle's calendar setting do not match"
            raise ModelLoadError(msg)
        if bundle.score_kind == "stream" and preprocess.stream is None:
            msg = "score kind 'stream' but the bundle has no stream scoring settings"
            raise ModelLoadError(msg)
        self.model = model.to(torch.device(device)).eval()

    @property
    def threshold(self) -> ThresholdSet:
        """The thresholds in force.

        Raises:
            NotCalibratedError: the bundle has none.
        """
        return thresholds_in_force(self.bundle.threshold)

    def probe(self) -> F64:
        """The score of a flat window at the fallback centre (its residual for ``stream``).

        The stream score of a series' first point is always 0: its residual is what can fail.
        """
        n = self.preprocess.spec.window_len
        center = self.preprocess.fallback.center
        scored = self.score(
            ["probe"], np.full((1, n), center), np.ones((1, n)), np.zeros(1, np.int64)
        )
        return scored.last_point if self.streaming else self.select(scored)

    def score(self, series: Sequence[str], values: F64, mask: F64, end_ts: I64) -> ScoredWindows:
        """Score raw windows ``values (n, W)`` (``mask`` 1 = observed) of ``series``.

        Args:
            series: the series id of each window (picks its scaler).
            values: raw values, oldest first; 0 where missing.
            mask: 1.0 where observed.
            end_ts: ``(n,)`` timestamp of each window's newest point (calendar features).
        """
        centers, scales = self.preprocess.scaling(series)
        x, m = self.preprocess.scale(series, values, mask, (centers, scales))
        cond = (
            calendar_features(end_ts, self.preprocess.utc_offset_ms)
            if self.preprocess.calendar
            else None
        )
        scores = score_windows(self.model, x, m, cond)
        return ScoredWindows(
            last_point=scores.residual,
            window_neg_elbo=scores.neg_elbo,
            expected=scores.expected * scales + centers,
            recon_nll=scores.neg_elbo - scores.kl,
            kl=scores.kl,
            windows=x,
        )

    @property
    def streaming(self) -> bool:
        """The bundle's score depends on each series' history (score kind ``stream``)."""
        return bool(self.bundle.score_kind == "stream")

    def new_scorers(self) -> StreamScorers | None:
        """Fresh per-series stream state for the ``stream`` score (``None`` for others)."""
        stream = self.preprocess.stream
        if not self.streaming or stream is None:
            return None
        return StreamScorers(stream, self.preprocess.spec.window_len)

    def select(self, scored: ScoredWindows) -> F64:
        """The scores the threshold applies to (the bundle's score kind, not ``stream``)."""
        return scored.select(self.bundle.score_kind)

    def decide_scores(
        self, scored: ScoredWindows, series: Sequence[str], scorers: StreamScorers | None
    ) -> DecideScores:
        """The scores the threshold applies to, which are ready, and the parts alerts report.

        With the ``stream`` kind each point goes through its series' scorer (in the given
        order, which must be each series' time order): the emitted anomaly score is
        thresholded, its fused surprise and the two parts are reported; a point whose
        series has not yet shown ``likelihood_min`` scores is not ready (warming up).
        """
        if scorers is None:
            score = self.select(scored)
            return DecideScores(score, np.ones(score.size, np.bool_), {})
        batch = scorers.step(series, scored.last_point, scored.windows)
        parts = {"fused": batch.fused, "model": batch.model_part, "novelty": batch.novelty_part}
        return DecideScores(batch.anomaly, batch.ready, parts | {"residual": scored.last_point})


class DecideScores(NamedTuple):
    """What :meth:`WindowDetector.decide_scores` returns.

    Attributes:
        score: ``(n,)`` the scores the threshold applies to.
        ready: ``(n,)`` the points that could be scored (the rest are warming up).
        parts: named ``(n,)`` components for the alert record.
    """

    score: F64
    ready: npt.NDArray[np.bool_]
    parts: dict[str, F64]


class PointScores(NamedTuple):
    """Per-point outcome of replaying KPI history through the window state.

    Attributes:
        status: ``(n,)`` ``ready`` (scored), ``warming_up``, ``sparse``, ``duplicate`` or
            ``out_of_order``.
        score: ``(n,)`` the bundle's score kind, NaN where not scored.
        expected: ``(n,)`` the model's expectation of the point, NaN where not scored.
    """

    status: npt.NDArray[np.str_]
    score: F64
    expected: F64


def score_points(
    detector: WindowDetector, series: Sequence[str], ts_ms: I64, values: F64
) -> PointScores:
    """Score KPI points in the given order, as the streaming service would.

    Every point goes through a fresh :class:`~streamvae.data.series_state.WindowStore`;
    ready windows are scored in one batch, then (``stream`` kind) through fresh per-series
    stream state in the given order, as the service does point by point.
    """
    pushes = replay(detector.preprocess.spec, series, ts_ms.tolist(), values.tolist())
    n = len(series)
    status = np.empty(n, dtype=object)
    rows: list[int] = []
    windows: list[F64] = []
    masks: list[F64] = []
    ends: list[int] = []
    for i, push in enumerate(pushes):
        status[i] = push.status
        if push.values is not None and push.mask is not None:
            rows.append(i)
            windows.append(push.values)
            masks.append(push.mask)
            ends.append(push.end_ts)
    score = np.full(n, np.nan)
    expected = np.full(n, np.nan)
    if rows:
        names = [series[i] for i in rows]
        scored = detector.score(names, np.stack(windows), np.stack(masks), np.array(ends, np.int64))
        decided = detector.decide_scores(scored, names, detector.new_scorers())
        rows_ready = np.asarray(rows)[decided.ready]
        score[rows_ready] = decided.score[decided.ready]
        expected[rows] = scored.expected
        status[np.asarray(rows)[~decided.ready]] = "warming_up"
    return PointScores(status.astype(np.str_), score, expected)
