"""Conditional VAEs: CVAE and the disentangled conditional VAE (dCVAE).

The condition ``c`` is the record's context: numeric values (e.g. hour of day, scaled)
and categorical codes (e.g. merchant type), embedded by a
:class:`~streamvae.models.blocks.ConditionEncoder`; both the encoder and the decoder see it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from streamvae.models.blocks import ConditionEncoder, mlp
from streamvae.models.vae import LOGVAR_MAX, LOGVAR_MIN, VAE, VAEConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class ConditionalVAEConfig(VAEConfig):
    """:class:`~streamvae.models.VAEConfig` plus the shape of the condition.

    Attributes:
        cond_numeric: number of numeric context values.
        cond_categories: the number of categories of each categorical context column.
        embedding_dim: embedding size of each categorical column.
    """

    cond_numeric: int = 0
    cond_categories: tuple[int, ...] = ()
    embedding_dim: int = 4

    def __post_init__(self) -> None:
        VAEConfig.__post_init__(self)
        if self.cond_numeric < 0 or any(n < 1 for n in self.cond_categories):
            msg = (
                f"invalid condition: cond_numeric={self.cond_numeric}, "
                f"cond_categories={self.cond_categories}"
            )
            raise ValueError(msg)
        if self.cond_numeric + len(self.cond_categories) == 0:
            msg = "a conditional model needs context: cond_numeric or cond_categories"
            raise ValueError(msg)
        if self.embedding_dim < 1:
            msg = f"invalid model setting embedding_dim={self.embedding_dim!r}"
            raise ValueError(msg)


class CVAE(VAE):
    """Conditional VAE: ``q(z | x, c)``, ``p(x | z, c)``, prior N(0, I).

    Example:
        >>> import torch
        >>> cfg = ConditionalVAEConfig(input_dim=3, cond_numeric=1, cond_categories=(4,))
        >>> model = CVAE(cfg).eval()
        >>> cond = torch.tensor([[0.5, 2.0], [-1.0, 0.0]])  # a numeric value, a category code
        >>> tuple(model(torch.zeros(2, 3), cond).recon.shape)
        (2, 3)
    """

    conditional = True
    config: ConditionalVAEConfig

    def __init__(self, config: ConditionalVAEConfig) -> None:
        super().__init__(config)

    def _make_condition(self) -> ConditionEncoder:
        return ConditionEncoder(
            self.config.cond_numeric, self.config.cond_categories, self.config.embedding_dim
        )


class DCVAE(CVAE):
    """dCVAE: a CVAE whose prior is learned from the condition, ``r(z_i | c)`` per dimension.

    The bound is ``E[log p(x | z, c)] - beta * sum_i KL(q(z_i | x, c) || r(z_i | c))``
    with ``r(z_i | c) = N(m_i(c), s_i(c)^2)`` from a small network on the embedded
    condition.
    """

    def __init__(self, config: ConditionalVAEConfig) -> None:
        super().__init__(config)
        cond_width = config.cond_numeric + config.embedding_dim * len(config.cond_categories)
        hidden = max(config.widths[-1] if config.widths else 16, 8)
        self.prior_net = mlp(cond_width, (hidden,), config.activation)
        self.prior_mu = nn.Linear(hidden, config.latent_dim)
        self.prior_logvar = nn.Linear(hidden, config.latent_dim)

    def _prior(
        self, mu: torch.Tensor, e: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        del mu
        if e is None:  # pragma: no cover - embed() raised already
            msg = "dCVAE needs a condition"
            raise ValueError(msg)
        h = self.prior_net(e)
        return self.prior_mu(h), self.prior_logvar(h).clamp(LOGVAR_MIN, LOGVAR_MAX)
