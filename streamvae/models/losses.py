"""Closed-form densities and divergences shared by the model families."""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, in closed form.

    Args:
        mu: ``(n, k)`` posterior means.
        logvar: ``(n, k)`` posterior log-variances.

    Returns:
        ``(n,)`` KL in nats: ``-1/2 * sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))``.
    """
    return -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def gaussian_nll(
    x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """Per-element negative log-density of ``x`` under ``N(mean, exp(log_var))``.

    Args:
        x: ``(n, d)`` observations.
        mean: ``(n, d)`` decoder means.
        log_var: decoder log-variance, a scalar or broadcastable tensor (0 = unit variance).

    Returns:
        ``(n, d)`` NLL in nats per element.
    """
    log_var_t = torch.as_tensor(log_var, dtype=x.dtype, device=x.device)
    return 0.5 * ((x - mean).pow(2) * torch.exp(-log_var_t) + log_var_t + LOG_2PI)
