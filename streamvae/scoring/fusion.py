"""The fused tabular score: the ELBO and a nearest-neighbour distance, by calibrated tails.

A VAE's negative ELBO says how badly a row fits the normal manifold; it says little about
a row that sits on the manifold but where no normal row ever was (a gap between clusters).
The distance to the k-th nearest normal training row says exactly that. Neither wins
everywhere, so the default tabular score fuses both:

1. each score ``s`` is turned into a *surprise* ``-log p(s)``, ``p`` its survival
   probability among held-out normal rows (the early-stopping rows: never trained on;
   their neighbour distances are leave-one-out, each row's own entry in the index left
   out, see :func:`leave_one_out_distances`). Up to the reference 90th percentile ``t`` it is the
   empirical survival; beyond it an exponential tail ``p = 0.1 * exp(-(s - t) / m)`` with
   ``m`` the mean excess over ``t`` (peaks over threshold, shape 0), so rows beyond every
   reference row are still ranked by how far beyond they are instead of tying;
2. the fused score is the sum of the surprises: ``-log`` of the product of the
   p-values, i.e. Fisher's combination (halved). The threshold is then calibrated on the
   fused score like any other, so the components need not be independent.

Image models also fit the tail of the complexity-corrected likelihood
(:mod:`streamvae.scoring.complexity`): the ELBO alone rewards images simpler than normal,
the corrected score does not (but misses images more complex than normal), so the
likelihood's surprise is the larger of the two (see :meth:`ScoreFusion.fuse`).

A distance between feature rows depends on how each feature is scaled, and no one scaling
suits every data set: standardising lets a near-constant feature's rare values dominate
(optdigits' blank pixels), min-max scaling lets one outlying training value shrink a
feature, the interquartile range suits skewed features. So a tabular fusion measures the
neighbour distance under three scalings of the training rows, each with its own tail:
standardised (the model's own scaling), min-max and interquartile range (*views*,
:class:`NeighbourView`, :func:`view_factors`), and adds the three surprises to the ELBO's.
On the 14 ADBench development sets (seeds 0-2) that raised the mean AUROC from 0.856
(ELBO + standardised distance) to 0.866; see the README for the table.

The neighbour index holds at most ``max_rows`` scaled training rows (a seeded sample when
there are more), so memory is ``max_rows * d * 4`` bytes per view and a query costs one
``(n, max_rows)`` distance matrix per view, whatever the size of the training data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from streamvae.scoring.scores import ScoreSet
from streamvae.scoring.tails import TAIL_LEVEL, mean_excess

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

GRID = 201
"""Quantiles kept of a component's reference scores (its empirical survival up to ``t``)."""
ROW_CHUNK = 128
"""Queries per distance product for feature rows (a short last chunk is zero-padded)."""
IMAGE_CHUNK = 16
"""Queries per distance product for images: thousands of pixels a row make the product of a
query chunk padded to 128 rows cost more than the VAE itself on small batches."""


@dataclass(frozen=True, slots=True)
class TailModel:
    """Survival of one score among held-out normals: empirical body, exponential tail.

    Attributes:
        quantiles: the reference scores' quantiles at ``TAIL_LEVEL * i / (GRID - 1)``.
        threshold: ``t``, the reference ``TAIL_LEVEL`` quantile (the last of ``quantiles``).
        mean_excess: ``m``, the mean of ``s - t`` over the reference scores above ``t``.
    """

    quantiles: tuple[float, ...]
    threshold: float
    mean_excess: float

    @classmethod
    def fit(cls, reference: F64) -> TailModel:
        """Fit on the reference (held-out normal) scores.

        Raises:
            ValueError: fewer than 10 reference scores, or non-finite ones.
        """
        ref = np.sort(np.asarray(reference, dtype=np.float64))
        if ref.size < 10 or not np.isfinite(ref).all():
            msg = f"need at least 10 finite reference scores, got {ref.size}"
            raise ValueError(msg)
        levels = np.linspace(0.0, TAIL_LEVEL, GRID)
        quantiles = np.quantile(ref, levels)
        t = float(quantiles[-1])
        return cls(tuple(float(q) for q in quantiles), t, mean_excess(ref, t))

    def surprise(self, scores: F64) -> F64:
        """``-log p(s)``: 0 at the bottom, ``-log 0.1`` at ``t``, linear in ``s`` beyond.

        >>> tail = TailModel.fit(np.arange(100.0))
        >>> [round(float(v), 3) for v in tail.surprise(np.array([-1.0, 89.1, 99.0]))]
        [0.0, 2.303, 4.136]
        """
        s = np.asarray(scores, dtype=np.float64)
        q = np.asarray(self.quantiles)
        levels = np.linspace(0.0, TAIL_LEVEL, q.size)
        body = np.interp(s, q, levels, left=0.0, right=TAIL_LEVEL)
        out = -np.log1p(-body)
        beyond = s > self.threshold
        out[beyond] = -math.log1p(-TAIL_LEVEL) + (s[beyond] - self.threshold) / self.mean_excess
        out[np.isnan(s)] = np.inf
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "quantiles": list(self.quantiles),
            "threshold": self.threshold,
            "mean_excess": self.mean_excess,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TailModel:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(float(v) for v in values["quantiles"]),
            float(values["threshold"]),
            float(values["mean_excess"]),
        )


class NeighbourIndex:
    """Exact k-th nearest-neighbour distances to a fixed set of (scaled) reference rows.

    Brute force on the scoring device, ``chunk_size`` queries at a time: one GEMM gives
    ``|r|^2 - 2 q.r`` for every reference row ``r`` (the ``(chunk, m)`` block stays in
    cache), the k smallest are kept and ``|q|^2`` added back. Costs ``2 m d`` flops a
    query; no approximate structure, so no recall to tune.

    A short last chunk is padded with zero rows: a matrix product's rounding depends on
    its shape, so every GEMM having the same shape is what makes a row's distance the same
    bits whatever batch it arrives in.
    """

    def __init__(self, rows: F32, k: int, *, chunk_size: int = ROW_CHUNK) -> None:
        if rows.ndim != 2 or rows.shape[0] < 1:
            msg = f"the neighbour index needs a non-empty (m, d) matrix, got {rows.shape}"
            raise ValueError(msg)
        if not 1 <= k <= rows.shape[0]:
            msg = f"neighbours k={k} must be between 1 and the {rows.shape[0]} indexed rows"
            raise ValueError(msg)
        self.rows = np.ascontiguousarray(rows, dtype=np.float32)
        self.k = k
        self.chunk_size = chunk_size
        self._tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def nbytes(self) -> int:
        """Memory held by the reference rows."""
        return int(self.rows.nbytes)

    def rescaled(self, factors: F32) -> NeighbourIndex:
        """The same rows with feature ``j`` multiplied by ``factors[j]`` (same k and chunks)."""
        return NeighbourIndex(self.rows * factors, self.k, chunk_size=self.chunk_size)

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows^T (d, m), |rows|^2 (m,))`` on ``device``, made once."""
        key = str(device)
        if key not in self._tensors:
            ref = torch.from_numpy(self.rows).to(device)
            self._tensors[key] = (ref.T.contiguous(), ref.pow(2).sum(dim=1))
        return self._tensors[key]

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """``(n,)`` Euclidean distance of each row of ``x (n, d)`` to its k-th neighbour."""
        ref_t, ref_sq = self._on(x.device)
        out = []
        for start in range(0, x.shape[0], self.chunk_size):
            q = x[start : start + self.chunk_size].to(ref_t.dtype)
            n = q.shape[0]
            block = (
                q
                if n == self.chunk_size
                else torch.cat([q, q.new_zeros(self.chunk_size - n, q.shape[1])])
            )
            partial = torch.addmm(ref_sq, block, ref_t, beta=1.0, alpha=-2.0)[:n]  # |r|^2 - 2 q.r
            if self.k == 1:
                kth = partial.amin(dim=1)
            else:
                kth = torch.topk(partial, self.k, dim=1, largest=False).values[:, -1]
            out.append((kth + q.pow(2).sum(dim=1)).clamp_min(0.0).sqrt())
        if not out:
            return torch.zeros(0, dtype=ref_t.dtype, device=x.device)
        return torch.cat(out)


def sample_positions(n: int, max_rows: int, seed: int) -> npt.NDArray[np.intp]:
    """Sorted positions of at most ``max_rows`` of ``n`` rows: all, or a seeded sample.

    >>> sample_positions(3, 5, seed=0).tolist()
    [0, 1, 2]
    """
    if n <= max_rows:
        return np.arange(n, dtype=np.intp)
    pick = np.random.default_rng(seed).choice(n, size=max_rows, replace=False)
    return np.sort(pick).astype(np.intp)


def sample_rows(x: F32, max_rows: int, seed: int) -> F32:
    """At most ``max_rows`` rows of ``x``: all of them, or a seeded sample without replacement."""
    if x.shape[0] <= max_rows:
        return x
    return x[sample_positions(x.shape[0], max_rows, seed)]


def leave_one_out_distances(index: NeighbourIndex, x: torch.Tensor, indexed: BoolArray) -> F64:
    """k-th neighbour distances of ``x``'s rows, leaving out each indexed row's own entry.

    A row of ``x`` that is also in ``index`` (``indexed``) would find itself at distance 0;
    its distance is taken to its k-th *other* neighbour (the (k+1)-th counting itself),
    which is what a new row from the same distribution meets in an index of the other
    rows. The others are measured as they are.

    Raises:
        ValueError: an indexed row while the index holds no more than ``k`` rows.
    """
    out = np.empty(x.shape[0], dtype=np.float64)
    mask = torch.from_numpy(np.asarray(indexed, dtype=bool))
    if mask.any():
        own = NeighbourIndex(index.rows, index.k + 1, chunk_size=index.chunk_size)
        out[indexed] = own.distances(x[mask]).double().cpu().numpy()
    if not mask.all():
        out[~indexed] = index.distances(x[~mask]).double().cpu().numpy()
    return out


VIEW_NAMES = ("minmax", "iqr")
"""The scalings a tabular fusion measures the neighbour distance under, beside the model's
standardised one: min-max range and interquartile range of the training rows."""


def view_factors(scaled: F32, name: str) -> F32:
    """Per-feature factors that turn standardised rows into the ``name`` scaling.

    The factor of feature ``j`` is ``1 / s_j``, ``s_j`` the feature's spread among the
    (standardised) training rows ``scaled``: its range (``minmax``) or interquartile range
    (``iqr``); a feature whose spread is 0 falls back to its standard deviation, then to
    1. Offsets do not change distances, so scaling by the factors is the whole change.

    >>> rows = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0], [3.0, 1.0]], np.float32)
    >>> view_factors(rows, "minmax").tolist(), view_factors(rows, "iqr").tolist()
    ([0.3333333432674408, 1.0], [0.6666666865348816, 1.0])

    Raises:
        ValueError: an unknown view name.
    """
    x = np.asarray(scaled, dtype=np.float64)
    if name == "minmax":
        spread = x.max(axis=0) - x.min(axis=0)
    elif name == "iqr":
        q75, q25 = np.quantile(x, [0.75, 0.25], axis=0)
        spread = q75 - q25
    else:
        msg = f"unknown neighbour view {name!r}: expected one of {', '.join(VIEW_NAMES)}"
        raise ValueError(msg)
    std = x.std(axis=0)
    fallback = np.where(std > 1e-12, std, 1.0)
    spread = np.where(spread > 1e-12, spread, fallback)
    return (1.0 / spread).astype(np.float32)


@dataclass(frozen=True, slots=True)
class NeighbourView:
    """The neighbour distance under another scaling of the features, and its tail.

    Attributes:
        name: the scaling (one of :data:`VIEW_NAMES`).
        factors: ``(d,)`` per-feature factors from the model's standardised units.
        index: the fusion's indexed rows times ``factors``.
        tail: survival of this distance among held-out normals.
    """

    name: str
    factors: F32
    index: NeighbourIndex
    tail: TailModel

    @classmethod
    def over(cls, base: NeighbourIndex, name: str, factors: F32, tail: TailModel) -> NeighbourView:
        """The view of ``base``'s rows under ``factors``.

        Raises:
            ValueError: ``factors`` not one finite positive value per feature.
        """
        f = np.asarray(factors, dtype=np.float32)
        if f.shape != (base.rows.shape[1],) or not (np.isfinite(f).all() and (f > 0).all()):
            msg = f"neighbour view {name!r} needs {base.rows.shape[1]} positive factors"
            raise ValueError(msg)
        return cls(name, f, base.rescaled(f), tail)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """``(n,)`` k-th neighbour distances of standardised rows ``x`` in this scaling."""
        return self.index.distances(x * torch.from_numpy(self.factors).to(x.device, x.dtype))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the rows are the fusion's, times the factors)."""
        return {"name": self.name, "factors": self.factors.tolist(), "tail": self.tail.to_dict()}


@dataclass(frozen=True, slots=True)
class ScoreFusion:
    """What the fused score needs: the neighbour index and the components' tails.

    Attributes:
        index: the normal rows (or images) the neighbour distance is measured to.
        elbo_tail: survival of the negative ELBO among held-out normals.
        neighbour_tail: survival of the neighbour distance among held-out normals.
        complexity_tail: image models only: survival of the complexity-corrected
            likelihood (:mod:`streamvae.scoring.complexity`), a third surprise.
        views: tabular models: the neighbour distance under other scalings, each a
            further surprise (none in bundles written before views existed).
    """

    index: NeighbourIndex
    elbo_tail: TailModel
    neighbour_tail: TailModel
    complexity_tail: TailModel | None = None
    views: tuple[NeighbourView, ...] = ()

    def view_distances(self, x: torch.Tensor) -> list[F64]:
        """Each view's ``(n,)`` neighbour distances of standardised rows ``x``."""
        return [view.distances(x).double().cpu().numpy() for view in self.views]

    def fuse(
        self,
        neg_elbo: F64,
        neighbour_distance: F64,
        corrected: F64 | None = None,
        view_distances: Sequence[F64] = (),
    ) -> F64:
        """The fused score per row (higher is more anomalous).

        ``-log p_elbo - log p_neighbour`` plus each view's ``-log p`` of its distance
        (:meth:`view_distances`); with a complexity tail the likelihood's part is
        the larger of the ELBO's and the complexity-corrected likelihood's surprises (the
        smaller p-value, Tippett's rule): the two fail in opposite directions, the ELBO on
        images simpler than normal, the corrected likelihood on images more complex than
        normal (noise, an added mark), so either one being surprised is enough.

        Raises:
            ValueError: ``corrected`` missing while the fusion has a complexity tail, or
                not one distance array per view.
        """
        if len(view_distances) != len(self.views):
            msg = f"this fusion has {len(self.views)} views, got {len(view_distances)} distances"
            raise ValueError(msg)
        likelihood = self.elbo_tail.surprise(neg_elbo)
        if self.complexity_tail is not None:
            if corrected is None:
                msg = "this fusion also needs the complexity-corrected likelihood"
                raise ValueError(msg)
            likelihood = np.maximum(likelihood, self.complexity_tail.surprise(corrected))
        fused = likelihood + self.neighbour_tail.surprise(neighbour_distance)
        for view, distances in zip(self.views, view_distances, strict=True):
            fused = fused + view.tail.surprise(distances)
        return fused

    def complete(
        self,
        scores: ScoreSet,
        neighbour_distance: F64,
        corrected: F64 | None = None,
        view_distances: Sequence[F64] = (),
    ) -> ScoreSet:
        """``scores`` with the ``neighbour`` distance and the ``fused`` score filled in."""
        fused = self.fuse(scores.neg_elbo, neighbour_distance, corrected, view_distances)
        return replace(scores, neighbour=neighbour_distance, fused=fused)

    def to_dict(self) -> dict[str, Any]:
        """The JSON part (the indexed rows are saved as an array beside it)."""
        values = {
            "k": self.index.k,
            "elbo_tail": self.elbo_tail.to_dict(),
            "neighbour_tail": self.neighbour_tail.to_dict(),
        }
        if self.complexity_tail is not None:
            values["complexity_tail"] = self.complexity_tail.to_dict()
        if self.views:
            values["views"] = [view.to_dict() for view in self.views]
        return values

    @classmethod
    def from_parts(
        cls, values: dict[str, Any], rows: F32, *, chunk_size: int = ROW_CHUNK
    ) -> ScoreFusion:
        """Inverse of :meth:`to_dict` plus the indexed rows (queried ``chunk_size`` at a time)."""
        complexity = values.get("complexity_tail")
        index = NeighbourIndex(rows, int(values["k"]), chunk_size=chunk_size)
        views = tuple(
            NeighbourView.over(
                index,
                str(view["name"]),
                np.asarray(view["factors"], dtype=np.float32),
                TailModel.from_dict(view["tail"]),
            )
            for view in values.get("views", ())
        )
        return cls(
            index,
            TailModel.from_dict(values["elbo_tail"]),
            TailModel.from_dict(values["neighbour_tail"]),
            None if complexity is None else TailModel.from_dict(complexity),
            views,
        )
