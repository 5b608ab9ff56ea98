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


def kl_gaussians(
    mu: torch.Tensor, logvar: torch.Tensor, prior_mu: torch.Tensor, prior_logvar: torch.Tensor
) -> torch.Tensor:
    """Per-dimension KL(N(mu, e^logvar) || N(prior_mu, e^prior_logvar)), closed form.

    Returns:
        ``(n, k)`` KL in nats, one column per latent dimension.
    """
    return 0.5 * (
        prior_logvar
        - logvar
        + (logvar.exp() + (mu - prior_mu).pow(2)) * torch.exp(-prior_logvar)
        - 1.0
    )


# Molchanov et al. (2017), variational dropout:
# -KL ~ k1 sigmoid(k2 + k3 log a) - 0.5 log(1 + 1/a) + C
_K1, _K2, _K3 = 0.63576, 1.87320, 1.48695


def kl_variational_dropout(log_alpha: torch.Tensor) -> torch.Tensor:
    """Molchanov's approximation of the variational-dropout KL, per dimension.

    The constant is ``C = -k1``, so the KL tends to 0 as ``alpha -> inf`` (a dimension
    that is pure noise costs nothing) and grows as ``alpha -> 0``.

    >>> kl = kl_variational_dropout(torch.tensor([-4.0, 0.0, 8.0]))
    >>> bool(kl[0] > kl[1] > kl[2] > 0), round(float(kl[2]), 3)
    (True, 0.0)
    """
    return (
        _K1
        - _K1 * torch.sigmoid(_K2 + _K3 * log_alpha)
        + 0.5 * torch.nn.functional.softplus(-log_alpha)
    )


def normal_log_prob(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Element-wise log-density of ``z`` under ``N(mean, exp(logvar))``."""
    return -0.5 * ((z - mean).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)
