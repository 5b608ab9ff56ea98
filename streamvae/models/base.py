"""What every model family returns and the small protocol each one meets."""

from __future__ import annotations

import abc
from typing import NamedTuple

import torch
from torch import nn


class VAEOutput(NamedTuple):
    """The forward pass of a VAE.

    Attributes:
        recon: ``(n, d)`` decoder mean of ``p(x | z)``.
        mu: ``(n, k)`` encoder mean of ``q(z | x)``.
        logvar: ``(n, k)`` encoder log-variance of ``q(z | x)``.
        z: ``(n, k)`` the latent code decoded (a sample in training mode, ``mu`` in eval mode).
    """

    recon: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor


class ElboTerms(NamedTuple):
    """Per-sample parts of the negative ELBO (all higher = worse fit).

    Attributes:
        recon_nll: ``(n,)`` negative log-likelihood of ``x`` under the decoder.
        kl: ``(n,)`` KL divergence of ``q(z | x)`` from the prior.
        per_feature_nll: ``(n, d)`` the reconstruction NLL split by input feature.
        squared_error: ``(n, d)`` squared reconstruction error per feature.
    """

    recon_nll: torch.Tensor
    kl: torch.Tensor
    per_feature_nll: torch.Tensor
    squared_error: torch.Tensor


class LossTerms(NamedTuple):
    """A training loss (scalar, to minimise) with its logged parts (batch means)."""

    loss: torch.Tensor
    recon_nll: torch.Tensor
    kl: torch.Tensor


class BaseVAE(nn.Module, abc.ABC):
    """Base class of every registered model family.

    Subclasses implement ``forward`` (sampling ``z`` in training mode, ``z = mu`` in eval
    mode), ``elbo_terms`` and ``loss``.
    """

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        """Encode and decode ``x (n, d)``."""

    @abc.abstractmethod
    def elbo_terms(self, x: torch.Tensor, out: VAEOutput) -> ElboTerms:
        """Per-sample negative-ELBO parts of ``x`` given the forward pass ``out``."""

    @abc.abstractmethod
    def loss(self, x: torch.Tensor, out: VAEOutput) -> LossTerms:
        """The training objective (its beta weighting included)."""
