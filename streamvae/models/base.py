"""What every model family returns and the protocol each one meets."""

from __future__ import annotations

import abc
from typing import NamedTuple

import torch
from torch import nn


class VAEOutput(NamedTuple):
    """The forward pass of a VAE.

    Attributes:
        recon: ``(n, d)`` decoder mean of ``p(x | z, c)``.
        mu: ``(n, k)`` encoder mean of ``q(z | x, c)``.
        logvar: ``(n, k)`` encoder log-variance of ``q(z | x, c)``.
        z: ``(n, k)`` the latent code decoded (a sample in training mode, ``mu`` in eval mode;
            pruned dimensions of a Sparse VAE are zero in eval mode).
        prior_mu: ``(n, k)`` mean of a learned conditional prior ``r(z | c)``; ``None`` for
            the standard normal prior.
        prior_logvar: ``(n, k)`` its log-variance, or ``None``.
    """

    recon: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    prior_mu: torch.Tensor | None = None
    prior_logvar: torch.Tensor | None = None

    def to_float(self) -> VAEOutput:
        """Every tensor as float32 (after a bfloat16 autocast forward pass)."""
        recon, mu, logvar, z, prior_mu, prior_logvar = self
        return VAEOutput(
            recon.float(),
            mu.float(),
            logvar.float(),
            z.float(),
            None if prior_mu is None else prior_mu.float(),
            None if prior_logvar is None else prior_logvar.float(),
        )


class ElboTerms(NamedTuple):
    """Per-sample parts of the negative ELBO (all higher = worse fit).

    Attributes:
        recon_nll: ``(n,)`` negative log-likelihood of ``x`` under the decoder.
        kl: ``(n,)`` KL divergence of ``q(z | x)`` from the prior (active dimensions only
            in eval mode).
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

    Subclasses implement the forward pass (sampling ``z`` in training mode, ``z = mu`` in
    eval mode), the per-sample ELBO terms, the training loss, and the pieces the
    importance-sampled likelihood needs: ``posterior``, ``prior``, ``decode`` and
    ``recon_nll``.
    """

    conditional: bool = False
    """Whether the family needs a condition ``c`` (the record's context) in every call."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        """Encode and decode ``x (n, d)`` given the condition ``cond (n, m)``."""

    @abc.abstractmethod
    def elbo_terms(
        self, x: torch.Tensor, out: VAEOutput, mask: torch.Tensor | None = None
    ) -> ElboTerms:
        """Per-sample negative-ELBO parts of ``x`` given the forward pass ``out``.

        ``mask (n, d)`` (1 = observed, 0 = missing) leaves missing inputs out of the
        reconstruction terms (the masked ELBO of Donut).
        """

    @abc.abstractmethod
    def loss(
        self,
        x: torch.Tensor,
        out: VAEOutput,
        beta: float | None = None,
        mask: torch.Tensor | None = None,
    ) -> LossTerms:
        """The training objective ``recon + beta * kl`` (``None``: the configured beta)."""

    @abc.abstractmethod
    def posterior(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``q(z | x, c)`` as ``(mu (n, k), logvar (n, k))``."""

    @abc.abstractmethod
    def prior(
        self, mu: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior ``p(z | c)`` as ``(mean, logvar)``, shaped like ``mu (n, k)``."""

    @abc.abstractmethod
    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder mean ``(n, d)`` of ``z (n, k)``."""

    @abc.abstractmethod
    def recon_nll(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """``(n, d)`` per-feature negative log-likelihood of ``x`` under the decoder."""

    @abc.abstractmethod
    def kl_per_dim(self, out: VAEOutput) -> torch.Tensor:
        """``(n, k)`` KL of the posterior from the prior, per latent dimension."""

    def active_mask(self) -> torch.Tensor:
        """``(k,)`` True for latent dimensions that are used at scoring time (all, here)."""
        return torch.ones(self.latent_dim, dtype=torch.bool, device=self.device_of())

    @property
    @abc.abstractmethod
    def latent_dim(self) -> int:
        """Size of the latent code."""

    def device_of(self) -> torch.device:
        """The device the model's parameters live on."""
        return next(self.parameters()).device

    @property
    def beta(self) -> float:
        """The configured KL weight (a schedule scales it during training)."""
        return 1.0

    def training_metrics(self) -> dict[str, float]:
        """Learned quantities worth logging each epoch (e.g. the decoder variance)."""
        return {}
