"""Importance-sampled log-likelihood of a VAE (Burda et al.'s K-sample bound).

``log p(x) ~ log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x)`` with ``z_k ~ q(z | x)``.
Its expectation is a lower bound on ``log p(x)`` that tightens as K grows and equals the
ELBO at K = 1; the negative of it is the ``is_nll`` score.

Determinism: the K standard-normal draws are fixed per model (:func:`latent_noise`, seeded)
and shared by every record (common random numbers), so a record's score does not depend
on the batch it arrives in.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from streamvae.models.base import BaseVAE
from streamvae.models.losses import normal_log_prob

_MAX_ELEMENTS = 1 << 24  # decoder outputs held at once: K-chunks are sized to stay below


class ImportanceEstimate(NamedTuple):
    """Per-sample estimates from the same K posterior samples.

    Attributes:
        nll: ``(n,)`` importance-sampled negative log-likelihood ``-log mean_k w_k``.
        neg_elbo: ``(n,)`` Monte Carlo negative ELBO ``-mean_k log w_k`` (>= ``nll``).
    """

    nll: torch.Tensor
    neg_elbo: torch.Tensor


def latent_noise(
    samples: int, latent_dim: int, seed: int = 0, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``(samples, latent_dim)`` fixed standard-normal draws (the same for every record).

    Raises:
        ValueError: ``samples < 1``.
    """
    if samples < 1:
        msg = f"importance sampling needs at least 1 sample, got {samples}"
        raise ValueError(msg)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(samples, latent_dim, generator=generator).to(device)


def importance_nll(
    model: BaseVAE, x: torch.Tensor, cond: torch.Tensor | None, noise: torch.Tensor
) -> ImportanceEstimate:
    """K-sample importance estimate of ``-log p(x | c)`` for each row of ``x``.

    Pruned latent dimensions (Sparse VAE) are held at zero and left out of both densities.
    The prior is the model's (N(0, I), or dCVAE's learned ``r(z | c)``); for the Sparse VAE,
    whose KL approximates an improper log-uniform prior, N(0, I) is used, so its ``is_nll``
    is not on the scale of its ``neg_elbo``.

    Args:
        model: the model (no dropout or batch statistics, so the mode does not matter).
        x: ``(n, d)`` scaled inputs.
        cond: ``(n, m)`` condition of a conditional family, else ``None``.
        noise: ``(K, k)`` standard-normal draws (see :func:`latent_noise`).

    Returns:
        The :class:`ImportanceEstimate`, in nats.
    """
    n, d = x.shape
    samples, k = noise.shape
    mu, logvar = model.posterior(x, cond)
    prior_mu, prior_logvar = model.prior(mu, cond)
    mask = model.active_mask().to(mu.dtype)
    std = torch.exp(0.5 * logvar)
    chunk = max(1, min(samples, _MAX_ELEMENTS // max(1, n * max(d, k))))
    log_ws = []
    noise = noise.to(mu.device, mu.dtype)
    for start in range(0, samples, chunk):
        eps = noise[start : start + chunk]
        c = eps.shape[0]
        z = (mu.unsqueeze(0) + std.unsqueeze(0) * eps.unsqueeze(1)) * mask  # (c, n, k)
        log_q = (normal_log_prob(z, mu, logvar) * mask).sum(-1)
        log_p = (normal_log_prob(z, prior_mu, prior_logvar) * mask).sum(-1)
        recon = model.decode(z.reshape(c * n, k), None if cond is None else cond.repeat(c, 1))
        log_px = -model.recon_nll(x.repeat(c, 1), recon).sum(-1).reshape(c, n)
        log_ws.append(log_px + log_p - log_q)
    log_w = torch.cat(log_ws)
    nll = -(torch.logsumexp(log_w, dim=0) - math.log(samples))
    return ImportanceEstimate(nll, -log_w.mean(dim=0))


def bits_per_dim(nll: torch.Tensor, dims: int) -> torch.Tensor:
    """Negative log-likelihood in nats per record -> bits per input dimension.

    For continuous inputs the value is on the scale of the scaled features (it is a
    density, not a discrete code length): compare it between records of one model.

    >>> round(float(bits_per_dim(torch.tensor([math.log(2.0) * 8]), 4)), 6)
    2.0
    """
    return nll / (dims * math.log(2.0))
