"""Gaussian VAE with MLP encoder and decoder: beta-VAE and learnable decoder variance.

The other families (Sparse VAE, CVAE, dCVAE) subclass :class:`VAE` and change one piece:
the posterior, the prior or the inputs of the networks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from streamvae.models.base import BaseVAE, ElboTerms, LossTerms, VAEOutput
from streamvae.models.blocks import (
    Activation,
    ConditionEncoder,
    activation_names,
    mlp,
    scale_widths,
)
from streamvae.models.losses import gaussian_nll, kl_gaussians

# Bounds on the encoder log-variance: exp(-12) .. exp(8). Keeps exp() finite on outliers
# at scoring time, where inputs can be arbitrarily far from the training data.
LOGVAR_MIN = -12.0
LOGVAR_MAX = 8.0
# Lower bound on the learned decoder log-variance log(gamma): gamma >= 1.2e-4 (in scaled
# units) so a model that reconstructs its training rows exactly cannot drive the NLL of
# every other row to infinity.
LOG_GAMMA_MIN = -9.0


@dataclass(frozen=True, slots=True, kw_only=True)
class VAEConfig:
    """Hyper-parameters of :class:`VAE` (and of :class:`~streamvae.models.SparseVAE`).

    Attributes:
        input_dim: number of input features ``d``.
        latent_dim: size of the latent code ``k``.
        hidden_dims: encoder hidden widths before ``width`` scaling; the decoder mirrors them.
        width: capacity multiplier applied to every hidden width (the learnable-variance
            study's alpha).
        beta: weight of the KL term in the training loss (1 = VAE, 0 = autoencoder,
            > 1 = beta-VAE); a beta schedule scales it during training.
        activation: hidden-layer activation.
        learn_variance: decoder ``N(mu_x(z), gamma I)`` with a trainable scalar gamma
            (log-parameterised); ``False``: gamma fixed.
        per_feature_variance: with ``learn_variance``, one trained gamma per feature
            (``N(mu_x(z), diag gamma)``, heteroscedastic across features): a feature the
            normals hold tightly gets a small gamma, so a deviation in it weighs more.
        init_log_gamma: ``log gamma``: its starting value when learned, its value when
            fixed (default 0: unit variance).
    """

    input_dim: int
    latent_dim: int = 8
    hidden_dims: tuple[int, ...] = (64, 32)
    width: float = 1.0
    beta: float = 1.0
    activation: Activation = "relu"
    learn_variance: bool = False
    per_feature_variance: bool = False
    init_log_gamma: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "input_dim": self.input_dim >= 1,
            "latent_dim": self.latent_dim >= 1,
            "hidden_dims": all(h >= 1 for h in self.hidden_dims),
            "width": self.width > 0 and math.isfinite(self.width),
            "beta": self.beta >= 0.0 and math.isfinite(self.beta),
            "init_log_gamma": LOG_GAMMA_MIN <= self.init_log_gamma <= 5.0,
        }
        for name, ok in checks.items():
            if not ok:
                msg = f"invalid model setting {name}={getattr(self, name)!r}"
                raise ValueError(msg)
        if self.activation not in activation_names():
            msg = f"activation must be one of {activation_names()}, got {self.activation!r}"
            raise ValueError(msg)

    @property
    def widths(self) -> tuple[int, ...]:
        """The hidden widths after the ``width`` multiplier."""
        return scale_widths(self.hidden_dims, self.width)


class VAE(BaseVAE):
    """Gaussian VAE: ``q(z|x) = N(mu(x), diag sigma^2(x))``, ``p(x|z) = N(D(z), gamma I)``.

    The prior is N(0, I). The negative ELBO per sample is ``recon_nll + kl``; training
    minimises ``recon_nll + beta * kl`` (beta-VAE). With ``learn_variance`` the decoder
    variance gamma is a trained scalar and ``recon_nll`` is the full Gaussian NLL.

    Example:
        >>> import torch
        >>> model = VAE(VAEConfig(input_dim=4)).eval()
        >>> out = model(torch.zeros(2, 4))
        >>> tuple(out.recon.shape), tuple(model.elbo_terms(torch.zeros(2, 4), out).kl.shape)
        ((2, 4), (2,))
    """

    config: VAEConfig

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.condition = self._make_condition()
        cond_width = 0 if self.condition is None else self.condition.width
        hidden = config.widths
        enc_out = hidden[-1] if hidden else config.input_dim + cond_width
        self.encoder = mlp(config.input_dim + cond_width, hidden, config.activation)
        self.mu_head = nn.Linear(enc_out, config.latent_dim)
        self.logvar_head: nn.Linear | None = nn.Linear(enc_out, config.latent_dim)
        decoder_hidden = tuple(reversed(hidden))
        self.decoder = mlp(config.latent_dim + cond_width, decoder_hidden, config.activation)
        dec_out = decoder_hidden[-1] if hidden else config.latent_dim + cond_width
        self.out_head = nn.Linear(dec_out, config.input_dim)
        if config.learn_variance:
            shape = (config.input_dim,) if config.per_feature_variance else ()
            self.log_gamma = nn.Parameter(torch.full(shape, float(config.init_log_gamma)))
        else:  # fixed: not in the state dict (the config holds it)
            self.register_buffer(
                "log_gamma", torch.tensor(float(config.init_log_gamma)), persistent=False
            )

    def _make_condition(self) -> ConditionEncoder | None:
        """The condition encoder of conditional families (none here)."""
        return None

    @property
    def latent_dim(self) -> int:
        """Size of the latent code."""
        return self.config.latent_dim

    @property
    def beta(self) -> float:
        """The configured KL weight."""
        return self.config.beta

    def embed(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        """The dense condition vector, or ``None`` for an unconditional family.

        Raises:
            ValueError: a conditional family called without a condition.
        """
        if self.condition is None:
            return None
        if cond is None:
            msg = f"{type(self).__name__} needs a condition (the record's context)"
            raise ValueError(msg)
        out: torch.Tensor = self.condition(cond)
        return out

    @staticmethod
    def _join(x: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
        return x if e is None else torch.cat([x, e.to(x.dtype)], dim=1)

    def _posterior(
        self, x: torch.Tensor, e: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(self._join(x, e))
        if self.logvar_head is None:  # pragma: no cover - families without it override this
            msg = f"{type(self).__name__} has no log-variance head"
            raise NotImplementedError(msg)
        logvar = self.logvar_head(h).clamp(LOGVAR_MIN, LOGVAR_MAX)
        return self.mu_head(h), logvar

    def _decode(self, z: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
        out: torch.Tensor = self.out_head(self.decoder(self._join(z, e)))
        return out

    def _prior(
        self, mu: torch.Tensor, e: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A learned prior's parameters, or ``None`` for N(0, I)."""
        del mu, e
        return None

    def _sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def posterior(
        self, x: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``q(z | x, c)`` as ``(mu, logvar)``."""
        return self._posterior(x, self.embed(cond))

    def prior(
        self, mu: torch.Tensor, cond: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior's ``(mean, logvar)`` shaped like ``mu``."""
        learned = self._prior(mu, self.embed(cond))
        if learned is None:
            zeros = torch.zeros_like(mu)
            return zeros, zeros
        return learned

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder mean ``(n, d)``."""
        return self._decode(z, self.embed(cond))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> VAEOutput:
        """Encode, sample (training) or take the mean (eval), decode.

        Args:
            x: ``(n, d)`` float32 inputs.
            cond: ``(n, m)`` condition of conditional families (ignored by the others).

        Returns:
            The :class:`VAEOutput`.
        """
        e = self.embed(cond)
        mu, logvar = self._posterior(x, e)
        if self.training:
            z = self._sample(mu, logvar)
        else:
            mask = self.active_mask()
            z = mu if bool(mask.all()) else mu * mask.to(mu.dtype)
        prior = self._prior(mu, e)
        recon = self._decode(z, e)
        if prior is None:
            return VAEOutput(recon, mu, logvar, z)
        return VAEOutput(recon, mu, logvar, z, prior[0], prior[1])

    @property
    def effective_log_gamma(self) -> torch.Tensor:
        """``log gamma`` as used (clamped from below)."""
        return self.log_gamma.clamp(min=LOG_GAMMA_MIN)

    def recon_nll(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Per-feature Gaussian NLL under ``N(recon, gamma)``."""
        return gaussian_nll(x, recon, self.effective_log_gamma)

    def kl_per_dim(self, out: VAEOutput) -> torch.Tensor:
        """``(n, k)`` KL of the posterior from the prior, per latent dimension."""
        if out.prior_mu is None or out.prior_logvar is None:
            zeros = torch.zeros_like(out.mu)
            return kl_gaussians(out.mu, out.logvar, zeros, zeros)
        return kl_gaussians(out.mu, out.logvar, out.prior_mu, out.prior_logvar)

    def elbo_terms(
        self, x: torch.Tensor, out: VAEOutput, mask: torch.Tensor | None = None
    ) -> ElboTerms:
        """Per-sample negative-ELBO parts (see :class:`ElboTerms`).

        In eval mode the KL sums only the active latent dimensions (all, except for a
        Sparse VAE's pruned ones). With ``mask (n, d)`` the missing inputs (0) add nothing
        to the reconstruction NLL or the squared error.
        """
        per_feature = self.recon_nll(x, out.recon)
        squared = (x - out.recon).pow(2)
        if mask is not None:
            per_feature = per_feature * mask
            squared = squared * mask
        kl_dims = self.kl_per_dim(out)
        if not self.training:
            active = self.active_mask()
            if not bool(active.all()):
                kl_dims = kl_dims * active.to(kl_dims.dtype)
        return ElboTerms(
            recon_nll=per_feature.sum(dim=1),
            kl=kl_dims.sum(dim=1),
            per_feature_nll=per_feature,
            squared_error=squared,
        )

    def loss(
        self,
        x: torch.Tensor,
        out: VAEOutput,
        beta: float | None = None,
        mask: torch.Tensor | None = None,
    ) -> LossTerms:
        """Batch mean of ``recon_nll + beta * kl`` (``beta=None``: the configured beta)."""
        terms = self.elbo_terms(x, out, mask)
        recon = terms.recon_nll.mean()
        kl = terms.kl.mean()
        weight = self.config.beta if beta is None else beta
        return LossTerms(recon + weight * kl, recon, kl)

    def training_metrics(self) -> dict[str, float]:
        """The learned decoder variance gamma (its geometric mean when per feature)."""
        if not self.config.learn_variance:
            return {}
        return {"gamma": float(self.effective_log_gamma.detach().mean().exp())}
