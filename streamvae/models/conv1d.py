"""1-D convolutional window VAEs for KPI windows (unconditional and calendar-conditioned).

The input is a window of ``input_dim`` consecutive points ``(n, W)``. The encoder is a stack
of stride-2 convolutions, then the MLP of :class:`~streamvae.models.VAE`; the decoder mirrors
it with transposed convolutions and crops back to ``W``. The conditional variant joins the
embedded condition (e.g. hour of day, day of week) to the flattened features and to ``z``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from streamvae.models.blocks import ConditionEncoder, activation_module, mlp, scale_widths
from streamvae.models.vae import LOGVAR_MAX, LOGVAR_MIN, VAE, VAEConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class Conv1dVAEConfig(VAEConfig):
    """:class:`~streamvae.models.VAEConfig` plus the convolution stack and the condition.

    Attributes:
        channels: channels of each stride-2 convolution (scaled by ``width``).
        kernel_size: odd kernel size of every convolution.
        cond_numeric: numeric condition values (conditional variant only).
        cond_categories: categories of each categorical condition (conditional variant only).
        embedding_dim: embedding size of each categorical condition.
    """

    channels: tuple[int, ...] = (16, 32)
    kernel_size: int = 5
    cond_numeric: int = 0
    cond_categories: tuple[int, ...] = ()
    embedding_dim: int = 4

    def __post_init__(self) -> None:
        VAEConfig.__post_init__(self)
        if not self.channels or any(c < 1 for c in self.channels):
            msg = f"invalid model setting channels={self.channels!r}"
            raise ValueError(msg)
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            msg = f"kernel_size must be an odd number >= 1, got {self.kernel_size}"
            raise ValueError(msg)
        if self.cond_numeric < 0 or any(n < 1 for n in self.cond_categories):
            msg = f"invalid condition: {self.cond_numeric}, {self.cond_categories}"
            raise ValueError(msg)
        if self.embedding_dim < 1:
            msg = f"invalid model setting embedding_dim={self.embedding_dim!r}"
            raise ValueError(msg)


class Conv1dVAE(VAE):
    """VAE over windows with a 1-D convolutional encoder and decoder.

    Example:
        >>> import torch
        >>> model = Conv1dVAE(Conv1dVAEConfig(input_dim=30)).eval()
        >>> tuple(model(torch.zeros(2, 30)).recon.shape)
        (2, 30)
    """

    config: Conv1dVAEConfig

    def __init__(self, config: Conv1dVAEConfig) -> None:
        super().__init__(config)
        channels = scale_widths(config.channels, config.width)
        k, pad = config.kernel_size, config.kernel_size // 2
        layers: list[nn.Module] = []
        c_in, length = 1, config.input_dim
        for c in channels:
            layers += [
                nn.Conv1d(c_in, c, k, stride=2, padding=pad),
                activation_module(config.activation),
            ]
            c_in, length = c, (length + 2 * pad - k) // 2 + 1
        self.conv = nn.Sequential(*layers, nn.Flatten())
        self._shape = (c_in, length)
        flat = c_in * length
        cond_width = 0 if self.condition is None else self.condition.width
        hidden = config.widths
        self.encoder = mlp(flat + cond_width, hidden, config.activation)
        enc_out = hidden[-1] if hidden else flat + cond_width
        self.mu_head = nn.Linear(enc_out, config.latent_dim)
        self.logvar_head = nn.Linear(enc_out, config.latent_dim)
        self.out_head = nn.Linear(hidden[0] if hidden else config.latent_dim + cond_width, flat)
        ups: list[nn.Module] = []
        targets = [*reversed(channels[:-1]), 1]
        for i, c in enumerate(targets):
            ups.append(nn.ConvTranspose1d(c_in, c, k, stride=2, padding=pad, output_padding=1))
            if i < len(targets) - 1:
                ups.append(activation_module(config.activation))
            c_in = c
        self.deconv = nn.Sequential(*ups)

    def _posterior(
        self, x: torch.Tensor, e: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(self._join(self.conv(x.unsqueeze(1)), e))
        head = self.logvar_head
        if head is None:  # pragma: no cover - built in __init__
            msg = "Conv1dVAE has no log-variance head"
            raise NotImplementedError(msg)
        return self.mu_head(h), head(h).clamp(LOGVAR_MIN, LOGVAR_MAX)

    def _decode(self, z: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
        h = self.out_head(self.decoder(self._join(z, e)))
        out: torch.Tensor = self.deconv(h.view(-1, *self._shape))
        return out[:, 0, : self.config.input_dim]


class Conv1dCVAE(Conv1dVAE):
    """:class:`Conv1dVAE` conditioned on the record's context (e.g. calendar features)."""

    conditional = True

    def _make_condition(self) -> ConditionEncoder:
        cfg = self.config
        if cfg.cond_numeric + len(cfg.cond_categories) == 0:
            msg = "a conditional model needs context: cond_numeric or cond_categories"
            raise ValueError(msg)
        return ConditionEncoder(cfg.cond_numeric, cfg.cond_categories, cfg.embedding_dim)
