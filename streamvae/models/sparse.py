"""Sparse VAE (Antelmi et al. 2019): a variational-dropout latent that prunes itself."""

from __future__ import annotations

import torch
from torch import nn

from streamvae.models.base import VAEOutput
from streamvae.models.losses import kl_variational_dropout
from streamvae.models.vae import LOGVAR_MAX, LOGVAR_MIN, VAE, VAEConfig

_MU_FLOOR = 1e-8  # keeps log(mu^2) finite where the encoder mean is exactly 0


class SparseVAE(VAE):
    """``q(z|x) = N(mu(x), alpha * mu(x)^2)`` with a learned dropout rate alpha per dimension.

    The KL term is Molchanov et al.'s variational-dropout approximation, which depends on
    alpha only (so the ``kl`` score is the same for every record). Dimensions with
    ``log alpha > 0`` carry more noise than signal: they are reported as pruned and, in eval
    mode, set to zero before decoding and left out of the KL.

    Example:
        >>> import torch
        >>> model = SparseVAE(VAEConfig(input_dim=4, latent_dim=3)).eval()
        >>> with torch.no_grad():
        ...     _ = model.log_alpha.copy_(torch.tensor([-3.0, 1.0, -1.0]))
        >>> model.active_mask().tolist(), float(model(torch.ones(2, 4)).z[:, 1].abs().sum())
        ([True, False, True], 0.0)
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        self.logvar_head = None
        # start mostly "on" (alpha = e^-2 ~ 0.14); training raises alpha of unused dims
        self.log_alpha = nn.Parameter(torch.full((config.latent_dim,), -2.0))

    def _posterior(
        self, x: torch.Tensor, e: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu: torch.Tensor = self.mu_head(self.encoder(self._join(x, e)))
        logvar = self.log_alpha + torch.log(mu.pow(2) + _MU_FLOOR)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def kl_per_dim(self, out: VAEOutput) -> torch.Tensor:
        """``(n, k)`` variational-dropout KL (each row the same)."""
        return kl_variational_dropout(self.log_alpha).expand_as(out.mu)

    def active_mask(self) -> torch.Tensor:
        """``(k,)`` True where ``log alpha <= 0`` (the dimension is kept)."""
        return self.log_alpha.detach() <= 0.0

    def pruned_dims(self) -> list[int]:
        """Indices of the pruned latent dimensions (``log alpha > 0``)."""
        return torch.nonzero(~self.active_mask()).flatten().tolist()

    def training_metrics(self) -> dict[str, float]:
        """The decoder variance (when learned) and the number of active dimensions."""
        return super().training_metrics() | {"active_dims": float(self.active_mask().sum())}
