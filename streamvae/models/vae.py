"""Gaussian VAE with MLP encoder and decoder (beta-VAE when ``beta != 1``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from streamvae.models.base import BaseVAE, ElboTerms, LossTerms, VAEOutput
from streamvae.models.blocks import Activation, activation_names, mlp
from streamvae.models.losses import gaussian_nll, kl_standard_normal

# Bounds on the encoder log-variance: exp(-12) .. exp(8). Keeps exp() finite on outliers
# at scoring time, where inputs can be arbitrarily far from the training data.
_LOGVAR_MIN = -12.0
_LOGVAR_MAX = 8.0


@dataclass(frozen=True, slots=True, kw_only=True)
class VAEConfig:
    """Hyper-parameters of :class:`VAE`.

    Attributes:
        input_dim: number of input features ``d``.
        latent_dim: size of the latent code ``k``.
        hidden_dims: encoder hidden widths; the decoder mirrors them.
        beta: weight of the KL term in the training loss (1 = VAE, 0 = autoencoder).
        activation: hidden-layer activation.
    """

    input_dim: int
    latent_dim: int = 8
    hidden_dims: tuple[int, ...] = (64, 32)
    beta: float = 1.0
    activation: Activation = "relu"

    def __post_init__(self) -> None:
        if self.input_dim < 1:
            msg = f"input_dim must be >= 1, got {self.input_dim}"
            raise ValueError(msg)
        if self.latent_dim < 1:
            msg = f"latent_dim must be >= 1, got {self.latent_dim}"
            raise ValueError(msg)
        if any(h < 1 for h in self.hidden_dims):
            msg = f"hidden_dims must all be >= 1, got {self.hidden_dims}"
            raise ValueError(msg)
        if not self.beta >= 0.0:
            msg = f"beta must be >= 0, got {self.beta}"
            raise ValueError(msg)
        if self.activation not in activation_names():
            msg = f"activation must be one of {activation_names()}, got {self.activation!r}"
            raise ValueError(msg)


class VAE(BaseVAE):
    """Gaussian VAE: ``q(z|x) = N(mu(x), diag sigma^2(x))``, ``p(x|z) = N(D(z), I)``, prior N(0, I).

    The negative ELBO per sample is ``recon_nll + kl``; training minimises
    ``recon_nll + beta * kl`` (beta-VAE).

    Example:
        >>> import torch
        >>> model = VAE(VAEConfig(input_dim=4)).eval()
        >>> out = model(torch.zeros(2, 4))
        >>> tuple(out.recon.shape), tuple(model.elbo_terms(torch.zeros(2, 4), out).kl.shape)
        ((2, 4), (2,))
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_dims
        last = hidden[-1] if hidden else config.input_dim
        self.encoder = mlp(config.input_dim, hidden, config.activation)
        self.mu_head = nn.Linear(last, config.latent_dim)
        self.logvar_head = nn.Linear(last, config.latent_dim)
        decoder_hidden = tuple(reversed(hidden))
        self.decoder = mlp(config.latent_dim, decoder_hidden, config.activation)
        self.out_head = nn.Linear(
            decoder_hidden[-1] if hidden else config.latent_dim, config.input_dim
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters: ``x (n, d) -> (mu (n, k), logvar (n, k))``."""
        h = self.encoder(x)
        logvar = self.logvar_head(h).clamp(_LOGVAR_MIN, _LOGVAR_MAX)
        return self.mu_head(h), logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean: ``z (n, k) -> (n, d)``."""
        out: torch.Tensor = self.out_head(self.decoder(z))
        return out

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        """Encode, sample (training) or take the mean (eval), decode.

        Args:
            x: ``(n, d)`` float32 inputs.
            cond: unused by this family (kept for the common signature).

        Returns:
            The :class:`VAEOutput`.
        """
        del cond
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return VAEOutput(self.decode(z), mu, logvar, z)

    def elbo_terms(self, x: torch.Tensor, out: VAEOutput) -> ElboTerms:
        """Per-sample negative-ELBO parts (see :class:`ElboTerms`)."""
        per_feature = gaussian_nll(x, out.recon)
        return ElboTerms(
            recon_nll=per_feature.sum(dim=1),
            kl=kl_standard_normal(out.mu, out.logvar),
            per_feature_nll=per_feature,
            squared_error=(x - out.recon).pow(2),
        )

    def loss(self, x: torch.Tensor, out: VAEOutput) -> LossTerms:
        """Batch mean of ``recon_nll + beta * kl``."""
        terms = self.elbo_terms(x, out)
        recon = terms.recon_nll.mean()
        kl = terms.kl.mean()
        return LossTerms(recon + self.config.beta * kl, recon, kl)
