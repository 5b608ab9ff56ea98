"""2-D convolutional VAEs for images (the pixel-localisation and learnable-variance studies).

Inputs travel flat, ``(n, C*H*W)`` in ``[0, 1]`` (the image's pixels in C, H, W order), so
every score, the learnable decoder variance, the importance-sampled NLL and bits per dimension
work exactly as for feature vectors, pixel by pixel; the model reshapes internally. Two
architectures:

* ``conv2d_vae`` (§3, pixel-wise localisation): fully convolutional. Stride-2 4x4
  convolutions with feature maps 16-32-64-256 (scaled by ``width``) and LeakyReLU; a
  convolution over the final ``H/16 x W/16`` map gives the posterior's mean and log-variance;
  the decoder mirrors it with transposed convolutions.
* ``conv2d_vae_stem`` (§4, learnable variance): encoder 64-128-256 stride-2 convolutions and
  two linear heads; decoder linear to a ``H/8 x W/8 x 256`` stem, then transposed
  convolutions 128-64-C.

Any image size works: the stride-2 layers need ``H`` and ``W`` to be multiples of
``2 ** len(channels)``, so the encoder pads other sizes with zeros (split evenly on both
sides) up to the next multiple, and the decoder's output is cropped back to ``H x W``. Scores,
maps and the decoder variance therefore only ever see the image's own pixels; a 28x28 digit
travels through a 32x32 network without the user padding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn import functional

from streamvae.models.base import BaseVAE
from streamvae.models.blocks import activation_module, scale_widths
from streamvae.models.vae import LOGVAR_MAX, LOGVAR_MIN, VAE, VAEConfig


def padding_for(height: int, width: int, stride_layers: int) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` zeros that make ``H x W`` divide by ``2 ** layers``.

    >>> padding_for(28, 28, 4)
    (2, 2, 2, 2)
    >>> padding_for(32, 27, 4)
    (2, 3, 0, 0)
    """
    step = 2**stride_layers
    pad_h, pad_w = -height % step, -width % step
    return (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Conv2dVAEConfig(VAEConfig):
    """:class:`~streamvae.models.VAEConfig` for images (``hidden_dims`` is not used).

    Attributes:
        image_channels: C (1 grey, 3 colour).
        image_height: H.
        image_width: W.
        channels: feature maps of the stride-2 convolutions (scaled by ``width``).
        head: ``conv`` (fully convolutional latent heads) or ``linear`` (flatten + linear
            heads; the decoder starts from a linear stem).
    """

    input_dim: int = 0  # derived: C * H * W
    hidden_dims: tuple[int, ...] = ()
    activation: Literal["relu", "leaky_relu", "elu", "tanh", "gelu"] = "leaky_relu"
    latent_dim: int = 32
    image_channels: int = 1
    image_height: int = 32
    image_width: int = 32
    channels: tuple[int, ...] = (16, 32, 64, 256)
    head: Literal["conv", "linear"] = "conv"

    def __post_init__(self) -> None:
        shape = (self.image_channels, self.image_height, self.image_width)
        if any(s < 1 for s in shape):
            msg = f"invalid image shape {shape}"
            raise ValueError(msg)
        pixels = self.image_channels * self.image_height * self.image_width
        if self.input_dim not in (0, pixels):
            msg = f"input_dim {self.input_dim} is not C*H*W = {pixels}"
            raise ValueError(msg)
        object.__setattr__(self, "input_dim", pixels)
        VAEConfig.__post_init__(self)
        if self.per_feature_variance:
            msg = "per_feature_variance is for feature vectors; image models learn one gamma"
            raise ValueError(msg)
        if not self.channels or any(c < 1 for c in self.channels):
            msg = f"invalid model setting channels={self.channels!r}"
            raise ValueError(msg)
        if self.head not in ("conv", "linear"):
            msg = f"head must be 'conv' or 'linear', got {self.head!r}"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class Conv2dStemVAEConfig(Conv2dVAEConfig):
    """The §4 architecture's defaults: 64-128-256, linear heads, a linear decoder stem."""

    channels: tuple[int, ...] = (64, 128, 256)
    head: Literal["conv", "linear"] = "linear"


class Conv2dVAE(VAE):
    """Convolutional VAE over flat ``(n, C*H*W)`` images (see the module docstring).

    Example:
        >>> import torch
        >>> model = Conv2dVAE(Conv2dVAEConfig(image_height=16, image_width=16, latent_dim=4))
        >>> tuple(model.eval()(torch.zeros(2, 256)).recon.shape)
        (2, 256)
    """

    config: Conv2dVAEConfig

    def __init__(self, config: Conv2dVAEConfig) -> None:
        BaseVAE.__init__(self)  # the MLP of VAE.__init__ is not built
        self.config = config
        self.condition = None
        channels = scale_widths(config.channels, config.width)
        act = config.activation
        self._image = (config.image_channels, config.image_height, config.image_width)
        self._pad = padding_for(config.image_height, config.image_width, len(channels))
        left, right, top, bottom = self._pad
        down = 2 ** len(channels)
        self._grid = (
            (config.image_height + top + bottom) // down,
            (config.image_width + left + right) // down,
        )
        layers: list[nn.Module] = []
        c_in = config.image_channels
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), activation_module(act)]
            c_in = c
        self.features = nn.Sequential(*layers)
        k, (h, w) = config.latent_dim, self._grid
        if config.head == "conv":
            self.heads: nn.Module = nn.Conv2d(c_in, 2 * k, (h, w))
            self.stem: nn.Module = nn.Sequential(
                nn.ConvTranspose2d(k, c_in, (h, w)), activation_module(act)
            )
        else:
            self.heads = nn.Sequential(nn.Flatten(), nn.Linear(c_in * h * w, 2 * k))
            self.stem = nn.Sequential(
                nn.Linear(k, c_in * h * w), nn.Unflatten(1, (c_in, h, w)), activation_module(act)
            )
        ups: list[nn.Module] = []
        targets = [*reversed(channels[:-1]), config.image_channels]
        for i, c in enumerate(targets):
            ups.append(nn.ConvTranspose2d(c_in, c, 4, stride=2, padding=1))
            if i < len(targets) - 1:
                ups.append(activation_module(act))
            c_in = c
        self.upsample = nn.Sequential(*ups)
        if config.learn_variance:
            self.log_gamma = nn.Parameter(torch.tensor(float(config.init_log_gamma)))
        else:
            self.register_buffer(
                "log_gamma", torch.tensor(float(config.init_log_gamma)), persistent=False
            )

    def _posterior(
        self, x: torch.Tensor, e: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        del e
        image = x.view(-1, *self._image)
        if any(self._pad):
            image = functional.pad(image, self._pad)
        stats = self.heads(self.features(image)).flatten(1)
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def _decode(self, z: torch.Tensor, e: torch.Tensor | None) -> torch.Tensor:
        del e
        seed = z.view(-1, self.config.latent_dim, 1, 1) if self.config.head == "conv" else z
        out: torch.Tensor = self.upsample(self.stem(seed))
        if any(self._pad):
            left, _, top, _ = self._pad
            _, h, w = self._image
            out = out[:, :, top : top + h, left : left + w]
        return out.flatten(1)
