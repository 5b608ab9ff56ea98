"""The Numenta Anomaly Benchmark's scoring rules, written from their published description.

A detector emits an anomaly score in [0, 1] for every point of a file, seeing the points in
order. A point counts as a detection when its score is at or above a threshold. Then:

* **probationary period**: the first ``min(floor(0.15 n), 0.15 * 5000)`` points are for
  learning only; nothing there is scored.
* **anomaly windows** (labelled spans): only the *earliest* detection inside a window counts,
  rewarded by a scaled sigmoid of its position, ``2 sigmoid(-5 p) - 1`` with ``p = -1`` at
  the window's left edge and ``p -> 0`` at its right edge, normalised so that a detection on
  the first point of a window earns exactly ``tp_weight``. A window without a detection costs
  ``fn_weight``.
* **false positives**: every detection outside a window costs ``fp_weight`` times the
  sigmoid of its distance past the preceding window's right edge (in units of that window's
  width, ``-1`` beyond three widths, and ``-1`` when no window precedes it), so flags just
  after a window are forgiven a little.
* **profiles**: ``standard`` (tp 1, fp 0.11, fn 1), ``reward_low_FP_rate`` (fp 0.22),
  ``reward_low_FN_rate`` (fn 2).
* **threshold**: one threshold per profile for the whole corpus, the one that maximises the
  corpus score (NAB optimises it for every detector).
* **normalisation**: ``100 (raw - null) / (perfect - null)``: the null detector flags nothing
  (``-fn_weight`` per window), the perfect one flags the first point of every window
  (``tp_weight`` per window).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
PROBATION_PERCENT = 0.15
OUTSIDE, PROBATION = -1, -2


@dataclass(frozen=True, slots=True)
class CostProfile:
    """The weights of one NAB application profile."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


NAB_PROFILES: dict[str, CostProfile] = {
    "standard": CostProfile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": CostProfile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": CostProfile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}


def scaled_sigmoid(position: float) -> float:
    """NAB's reward of a detection at relative ``position`` (-1: window start; > 3: -1).

    >>> round(scaled_sigmoid(-1.0), 5), scaled_sigmoid(0.0), scaled_sigmoid(3.5)
    (0.98661, 0.0, -1.0)
    """
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probationary_length(n: int, percent: float = PROBATION_PERCENT) -> int:
    """Number of leading points a detector may only learn from.

    >>> probationary_length(1000), probationary_length(22695)
    (150, 750)
    """
    return math.ceil(min(math.floor(percent * n), percent * 5000))


@dataclass(frozen=True, slots=True)
class FileSweep:
    """One file's points, prepared for scoring at any threshold.

    Attributes:
        name: the file's name (relative path in the corpus).
        weight: ``(n,)`` what each point adds if it is a detection: its weighted true-positive
            reward inside a window, its (negative) false-positive cost outside.
        window: ``(n,)`` the window index of each point, ``-1`` outside every window, ``-2``
            in the probationary period.
        windows: number of windows with at least one scorable point.
        profile: the cost profile the weights use.
    """

    name: str
    weight: F64
    window: npt.NDArray[np.int64]
    windows: int
    profile: CostProfile

    @property
    def null_score(self) -> float:
        """Raw score of a detector that flags nothing."""
        return -self.profile.fn_weight * self.windows

    @property
    def perfect_score(self) -> float:
        """Raw score of a detector that flags the first point of every window only."""
        return self.profile.tp_weight * self.windows


def sweep_file(
    name: str,
    n: int,
    windows: Sequence[tuple[int, int]],
    profile: CostProfile,
    *,
    probation_percent: float = PROBATION_PERCENT,
) -> FileSweep:
    """Per-point weights of a file of ``n`` points with ``windows`` (inclusive index spans).

    Raises:
        ValueError: windows out of range, empty, or overlapping / out of order.
    """
    weight = np.empty(n, np.float64)
    window_of = np.full(n, OUTSIDE, np.int64)
    previous_end = -1
    for start, end in windows:
        if not 0 <= start <= end < n or start <= previous_end:
            msg = f"{name}: window [{start}, {end}] is out of range or overlaps the one before"
            raise ValueError(msg)
        previous_end = end
    max_tp = scaled_sigmoid(-1.0)
    spans = list(windows)
    current = 0  # index into spans of the next window to reach
    prev_end: int | None = None
    prev_width = 0
    for i in range(n):
        while current < len(spans) and spans[current][1] < i:
            prev_end, prev_width = spans[current][1], spans[current][1] - spans[current][0] + 1
            current += 1
        inside = current < len(spans) and spans[current][0] <= i
        if inside:
            start, end = spans[current]
            width = end - start + 1
            position = -(end - i + 1) / width
            weight[i] = scaled_sigmoid(position) * profile.tp_weight / max_tp
            window_of[i] = current
        elif prev_end is None:
            weight[i] = -1.0 * profile.fp_weight
        else:
            past = abs(prev_end - i) / max(prev_width - 1, 1)
            weight[i] = scaled_sigmoid(past) * profile.fp_weight
    probation = probationary_length(n, probation_percent)
    window_of[:probation] = PROBATION
    scorable = window_of[window_of >= 0]
    return FileSweep(name, weight, window_of, int(np.unique(scorable).size), profile)


@dataclass(frozen=True, slots=True)
class FileScore:
    """One file's outcome at one threshold."""

    name: str
    raw: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int

    @property
    def normalized(self) -> float | None:
        """``100 (raw - null) / (perfect - null)``; ``None`` for a file with no window."""
        if self.perfect == self.null:
            return None
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def score_file(sweep: FileSweep, scores: F64, threshold: float) -> FileScore:
    """Score one file's anomaly ``scores (n,)``: detections are ``scores >= threshold``.

    Raises:
        ValueError: ``scores`` does not have one value per point.
    """
    if scores.shape != sweep.weight.shape:
        msg = f"{sweep.name}: {scores.shape[0]} scores for {sweep.weight.shape[0]} points"
        raise ValueError(msg)
    detected = (scores >= threshold) & (sweep.window != PROBATION)
    outside = detected & (sweep.window == OUTSIDE)
    raw = float(sweep.weight[outside].sum())
    tp = 0
    for w in np.unique(sweep.window[sweep.window >= 0]):
        hits = np.flatnonzero(detected & (sweep.window == w))
        if hits.size:
            raw += float(sweep.weight[hits[0]])  # the earliest detection earns the most
            tp += 1
        else:
            raw -= sweep.profile.fn_weight
    return FileScore(
        sweep.name,
        raw,
        sweep.null_score,
        sweep.perfect_score,
        tp,
        int(outside.sum()),
        sweep.windows - tp,
    )


def optimal_threshold(sweeps: Sequence[FileSweep], scores: Sequence[F64]) -> tuple[float, float]:
    """The threshold that maximises the summed raw score of every file, and that score.

    Every distinct score value is a candidate (plus one above 1 that flags nothing); ties
    go to the higher threshold. One pass over the points sorted by score, as NAB's sweep.

    Raises:
        ValueError: a mismatch between ``sweeps`` and ``scores``.
    """
    if len(sweeps) != len(scores):
        msg = f"{len(sweeps)} files but {len(scores)} score arrays"
        raise ValueError(msg)
    values: list[F64] = []
    weights: list[F64] = []
    keys: list[npt.NDArray[np.int64]] = []
    offset = 0
    for sweep, s in zip(sweeps, scores, strict=True):
        if s.shape != sweep.weight.shape:
            msg = f"{sweep.name}: {s.shape[0]} scores for {sweep.weight.shape[0]} points"
            raise ValueError(msg)
        keep = sweep.window != PROBATION
        values.append(s[keep])
        weights.append(sweep.weight[keep])
        window = sweep.window[keep]
        keys.append(np.where(window >= 0, window + offset, -1))
        offset += int(sweep.window.max(initial=-1)) + 1
    value, weight, key = np.concatenate(values), np.concatenate(weights), np.concatenate(keys)
    fn_of = _window_costs(sweeps)
    order = np.argsort(-value, kind="stable")
    best_window: dict[int, float] = {}
    fp_total = 0.0
    base = -sum(fn_of.values())
    window_total = base
    best_threshold, best_score = 1.1, base
    i = 0
    while i < order.size:
        level = value[order[i]]
        while i < order.size and value[order[i]] == level:
            j = int(order[i])
            k = int(key[j])
            if k < 0:
                fp_total += weight[j]
            elif k not in best_window or weight[j] > best_window[k]:
                window_total += weight[j] - best_window.get(k, -fn_of[k])
                best_window[k] = weight[j]
            i += 1
        score = window_total + fp_total
        if score > best_score:
            best_threshold, best_score = float(level), score
    return best_threshold, best_score


def _window_costs(sweeps: Sequence[FileSweep]) -> dict[int, float]:
    """The miss cost of every scorable window, keyed as in :func:`optimal_threshold`."""
    costs: dict[int, float] = {}
    offset = 0
    for sweep in sweeps:
        for w in np.unique(sweep.window[sweep.window >= 0]).tolist():
            costs[w + offset] = sweep.profile.fn_weight
        offset += int(sweep.window.max(initial=-1)) + 1
    return costs


@dataclass(frozen=True, slots=True)
class CorpusScore:
    """A profile's scores over a corpus at its optimised threshold."""

    profile: str
    threshold: float
    files: tuple[FileScore, ...]

    @property
    def raw(self) -> float:
        """The summed raw score."""
        return sum(f.raw for f in self.files)

    @property
    def normalized(self) -> float:
        """The corpus score on NAB's 0 (null detector) to 100 (perfect) scale."""
        null = sum(f.null for f in self.files)
        perfect = sum(f.perfect for f in self.files)
        if perfect == null:
            return 0.0
        return 100.0 * (self.raw - null) / (perfect - null)


def score_corpus(
    files: Sequence[tuple[str, int, Sequence[tuple[int, int]]]],
    scores: Sequence[F64],
    profile: CostProfile,
    *,
    threshold: float | None = None,
) -> CorpusScore:
    """Score every file with ``profile`` at ``threshold`` (default: NAB's optimised one).

    Args:
        files: ``(name, n_points, windows)`` per file.
        scores: each file's ``(n,)`` anomaly scores in [0, 1].
        profile: the cost profile.
        threshold: a fixed threshold, or ``None`` to optimise it over the corpus.
    """
    sweeps = [sweep_file(name, n, windows, profile) for name, n, windows in files]
    if threshold is None:
        threshold, _ = optimal_threshold(sweeps, scores)
    results = tuple(score_file(s, v, threshold) for s, v in zip(sweeps, scores, strict=True))
    return CorpusScore(profile.name, threshold, results)
