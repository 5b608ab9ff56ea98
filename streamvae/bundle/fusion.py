"""Fit the fused score of a trained tabular bundle (see :mod:`streamvae.scoring.fusion`)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import torch

from streamvae.bundle.detector import Detector
from streamvae.bundle.io import ModelBundle, TabularPreprocess
from streamvae.scoring.fusion import NeighbourIndex, ScoreFusion, TailModel, sample_rows
from streamvae.types import ScoreKind

F32 = npt.NDArray[np.float32]
MIN_REFERENCE_ROWS = 10


def reference_rows_message(n_held_out: int) -> str:
    """Why ``n_held_out`` early-stopping rows cannot calibrate the fused score's parts."""
    return (
        f"the fused score needs at least {MIN_REFERENCE_ROWS} held-out training rows "
        f"to calibrate its parts, got {n_held_out}: raise training.val_fraction, "
        "train on more rows, or score neg_elbo"
    )


def with_fusion(
    bundle: ModelBundle,
    raw: F32,
    held_out: npt.NDArray[np.intp],
    *,
    score_kind: ScoreKind,
    k: int,
    max_rows: int,
    seed: int,
    context: F32 | None = None,
) -> ModelBundle:
    """``bundle`` with a neighbour index and the two tails fitted, scoring ``score_kind``.

    The index holds the scaled rows the model was trained on (``raw`` less ``held_out``;
    at most ``max_rows``, a seeded sample beyond). The tails are fitted on the held-out
    rows (the early-stopping split: never trained on and not in the index), so a
    reference score is out-of-sample, as a new record's is.

    Args:
        bundle: a trained tabular bundle.
        raw: ``(n, d)`` the training rows in raw units, as given to the fit.
        held_out: indices of the rows the fit held out for early stopping.
        score_kind: the score the threshold will apply to (``fused`` or ``neighbour``).
        k: the neighbour whose distance is the score (1 = the nearest).
        max_rows: the most rows the index keeps.
        seed: seeds the sample of indexed rows.
        context: ``(n, width)`` raw context of a conditional model.

    Raises:
        ValueError: fewer than ``MIN_REFERENCE_ROWS`` held-out rows, or fewer indexed rows
            than ``k``.
    """
    preprocess = bundle.preprocess
    if not isinstance(preprocess, TabularPreprocess):
        msg = "only tabular models take a neighbour index"
        raise TypeError(msg)
    if held_out.size < MIN_REFERENCE_ROWS:
        raise ValueError(reference_rows_message(held_out.size))
    keep = np.ones(raw.shape[0], dtype=bool)
    keep[held_out] = False
    indexed = sample_rows(preprocess.scaler.transform(raw[keep]), max_rows, seed)
    index = NeighbourIndex(indexed, k)
    plain = replace(bundle, score_kind="neg_elbo", fusion=None)
    reference = Detector(plain).score(raw[held_out], None if context is None else context[held_out])
    scaled = torch.from_numpy(preprocess.scaler.transform(raw[held_out]))
    with torch.inference_mode():
        distances = index.distances(scaled).double().numpy()
    fusion = ScoreFusion(
        index,
        TailModel.fit(reference.scores.neg_elbo),
        TailModel.fit(distances),
    )
    return replace(bundle, score_kind=score_kind, fusion=fusion)
