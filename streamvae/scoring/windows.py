"""Scores of KPI windows: the newest point's score from its window (Donut's idea)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import torch

from streamvae.models.base import BaseVAE

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class WindowScores(NamedTuple):
    """Scores of a batch of windows (higher = more anomalous).

    Attributes:
        last_point: ``(n,)`` negative log-likelihood of each window's newest point under the
            decoder (``z = mu``): the score of the point that just arrived.
        neg_elbo: ``(n,)`` the masked negative ELBO of the whole window.
        kl: ``(n,)`` its KL part.
        residual: ``(n,)`` ``|observed - expected|`` of the newest point (scaled units).
        expected: ``(n,)`` the reconstruction of the newest point (scaled units).
        observed: ``(n,)`` share of the window's points that were observed.
    """

    last_point: F64
    neg_elbo: F64
    kl: F64
    residual: F64
    expected: F64
    observed: F64


def score_windows(
    model: BaseVAE,
    values: F32,
    mask: F32,
    cond: F32 | None = None,
    *,
    hide_last: bool = True,
    chunk_size: int = 8192,
) -> WindowScores:
    """Score ``values (n, W)`` windows with missing slots ``mask == 0`` left out.

    With ``hide_last`` the encoder does not see the newest point (it is treated as missing,
    as a model trained with missing-point injection expects), so the model's expectation of
    that point comes from the rest of the window and the condition; otherwise an
    autoencoder can copy a level shift through and miss it.

    Runs in eval mode under ``torch.inference_mode``, on the model's device, in chunks: a
    window's score does not depend on its batch.
    """
    model.eval()
    device = model.device_of()
    last, elbo, kl, residual, expected = [], [], [], [], []
    with torch.inference_mode():
        for start in range(0, values.shape[0], chunk_size):
            stop = start + chunk_size
            x = torch.from_numpy(np.ascontiguousarray(values[start:stop])).to(device)
            m = torch.from_numpy(np.ascontiguousarray(mask[start:stop])).to(device)
            c = None if cond is None else torch.from_numpy(cond[start:stop]).to(device)
            seen = m
            if hide_last:
                seen = m.clone()
                seen[:, -1] = 0.0
            out = model(x * seen, c)
            terms = model.elbo_terms(x, out, m)
            last.append(terms.per_feature_nll[:, -1].double().cpu().numpy())
            elbo.append((terms.recon_nll + terms.kl).double().cpu().numpy())
            kl.append(terms.kl.double().cpu().numpy())
            expected.append(out.recon[:, -1].double().cpu().numpy())
            residual.append((x[:, -1] - out.recon[:, -1]).abs().double().cpu().numpy())
    if not last:
        empty = np.zeros(0, np.float64)
        return WindowScores(empty, empty, empty, empty, empty, empty)
    observed = mask.mean(axis=1).astype(np.float64)
    return WindowScores(
        np.concatenate(last),
        np.concatenate(elbo),
        np.concatenate(kl),
        np.concatenate(residual),
        np.concatenate(expected),
        observed,
    )
