from __future__ import annotations

import math

import torch

from streamvae.models.losses import gaussian_nll, kl_standard_normal


def test_closed_form_kl_matches_monte_carlo_estimate():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(4, 3, generator=gen)
    logvar = torch.randn(4, 3, generator=gen) * 0.5
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(200_000, 4, 3, generator=gen)
    log_q = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    mc = (log_q - log_p).mean(0)
    closed = kl_standard_normal(mu, logvar)
    assert closed.shape == (4,)
    assert torch.allclose(closed, mc, atol=0.02)


def test_kl_is_zero_only_at_the_prior():
    zeros = torch.zeros(2, 5)
    assert torch.equal(kl_standard_normal(zeros, zeros), torch.zeros(2))
    assert (kl_standard_normal(zeros + 0.1, zeros) > 0).all()


def test_gaussian_nll_matches_torch_distribution():
    x = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    mean = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    for log_var in (0.0, math.log(0.25)):
        expected = -torch.distributions.Normal(mean, math.exp(0.5 * log_var)).log_prob(x)
        assert torch.allclose(gaussian_nll(x, mean, log_var), expected, atol=1e-6)
