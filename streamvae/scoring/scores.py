"""Pure per-sample and per-feature anomaly scores (higher = more anomalous)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from streamvae.models.base import ElboTerms
from streamvae.types import NEIGHBOUR_SCORE_KINDS, SCORE_KINDS, ScoreKind

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ScoreSet:
    """Every score of one batch, as float64 numpy arrays.

    Attributes:
        neg_elbo: ``(n,)`` negative ELBO = ``recon_nll + kl`` (beta = 1: the true bound).
        recon_error: ``(n,)`` summed squared reconstruction error ``||x - g(f_mu(x))||^2``.
        kl: ``(n,)`` KL of the posterior from the prior.
        recon_nll: ``(n,)`` reconstruction negative log-likelihood.
        per_feature: ``(n, d)`` squared reconstruction error per feature (what alerts
            explain a record by); a tabular model with one learned decoder variance per
            feature divides it by that variance.
        is_nll: ``(n,)`` importance-sampled negative log-likelihood, when computed.
        bpd: ``(n,)`` ``is_nll`` in bits per input dimension, when computed.
        neighbour: ``(n,)`` distance to the k-th nearest normal training row, when the
            model has a neighbour index.
        fused: ``(n,)`` ``neg_elbo`` and ``neighbour`` fused by calibrated tails, when the
            model has a neighbour index.
    """

    neg_elbo: F64
    recon_error: F64
    kl: F64
    recon_nll: F64
    per_feature: F64
    is_nll: F64 | None = None
    bpd: F64 | None = None
    neighbour: F64 | None = None
    fused: F64 | None = None

    def available(self) -> tuple[ScoreKind, ...]:
        """The score kinds this set holds."""
        return tuple(k for k in SCORE_KINDS if getattr(self, k) is not None)

    def select(self, kind: ScoreKind) -> F64:
        """The ``(n,)`` scores of ``kind``.

        Raises:
            ValueError: unknown kind, or a sampled score that was not computed.
        """
        if kind not in SCORE_KINDS:
            msg = f"unknown score kind {kind!r}; choose one of {SCORE_KINDS}"
            raise ValueError(msg)
        value: F64 | None = getattr(self, kind)
        if value is None:
            how = (
                "the model has no neighbour index (train it with score_kind fused)"
                if kind in NEIGHBOUR_SCORE_KINDS
                else "score with importance samples"
            )
            msg = f"score {kind!r} was not computed: {how}"
            raise ValueError(msg)
        return value


def score_set(terms: ElboTerms, is_nll: torch.Tensor | None = None) -> ScoreSet:
    """Turn a model's per-sample ELBO terms into numpy scores.

    Args:
        terms: output of ``model.elbo_terms`` (tensors on any device).
        is_nll: ``(n,)`` importance-sampled NLL, when computed (adds ``is_nll`` and ``bpd``).

    Returns:
        The :class:`ScoreSet` (float64, on the CPU).
    """
    recon_nll = terms.recon_nll.detach().double().cpu().numpy()
    kl = terms.kl.detach().double().cpu().numpy()
    squared = terms.squared_error.detach().double().cpu().numpy()
    nll = None if is_nll is None else is_nll.detach().double().cpu().numpy()
    return ScoreSet(
        neg_elbo=recon_nll + kl,
        recon_error=squared.sum(axis=1),
        kl=kl,
        recon_nll=recon_nll,
        per_feature=squared,
        is_nll=nll,
        bpd=None if nll is None else nll / (squared.shape[1] * math.log(2.0)),
    )


def concat_score_sets(parts: list[ScoreSet]) -> ScoreSet:
    """Concatenate the score sets of consecutive chunks.

    Raises:
        ValueError: ``parts`` is empty.
    """
    if not parts:
        msg = "nothing to concatenate"
        raise ValueError(msg)
    sampled = all(p.is_nll is not None for p in parts)
    fused = all(p.fused is not None and p.neighbour is not None for p in parts)
    return ScoreSet(
        neg_elbo=np.concatenate([p.neg_elbo for p in parts]),
        recon_error=np.concatenate([p.recon_error for p in parts]),
        kl=np.concatenate([p.kl for p in parts]),
        recon_nll=np.concatenate([p.recon_nll for p in parts]),
        per_feature=np.concatenate([p.per_feature for p in parts]),
        is_nll=np.concatenate([p.is_nll for p in parts if p.is_nll is not None])
        if sampled
        else None,
        bpd=np.concatenate([p.bpd for p in parts if p.bpd is not None]) if sampled else None,
        neighbour=np.concatenate([p.neighbour for p in parts if p.neighbour is not None])
        if fused
        else None,
        fused=np.concatenate([p.fused for p in parts if p.fused is not None]) if fused else None,
    )


def top_contributions(per_feature: F64, k: int) -> tuple[npt.NDArray[np.intp], F64]:
    """The ``k`` features with the largest error per row, and their share of the row's error.

    Args:
        per_feature: ``(n, d)`` non-negative per-feature errors.
        k: how many features to keep (clipped to ``d``).

    Returns:
        ``(indices (n, k), shares (n, k))``, largest first; shares are in [0, 1].

    >>> idx, share = top_contributions(np.array([[1.0, 3.0, 0.0]]), 2)
    >>> idx.tolist(), share.round(2).tolist()
    ([[1, 0]], [[0.75, 0.25]])
    """
    k = max(0, min(k, per_feature.shape[1]))
    order = np.argsort(-per_feature, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(per_feature, order, axis=1)
    totals = per_feature.sum(axis=1, keepdims=True)
    shares = np.divide(picked, totals, out=np.zeros_like(picked), where=totals > 0)
    return order, shares
