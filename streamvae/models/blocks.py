"""Shared building blocks: MLP stacks, width scaling, the condition encoder."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Activation = Literal["relu", "leaky_relu", "elu", "tanh", "gelu"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


def mlp(
    in_dim: int, hidden_dims: tuple[int, ...], activation: Activation = "relu"
) -> nn.Sequential:
    """A stack of ``Linear -> activation`` layers; the output size is ``hidden_dims[-1]``.

    Args:
        in_dim: input width.
        hidden_dims: width of each hidden layer (may be empty: identity).
        activation: activation after every layer.

    Returns:
        The stack as ``nn.Sequential``.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), _ACTIVATIONS[activation]()]
        width = hidden
    return nn.Sequential(*layers)


def activation_module(name: Activation) -> nn.Module:
    """A fresh activation layer."""
    return _ACTIVATIONS[name]()


def activation_names() -> tuple[str, ...]:
    """The activations ``mlp`` accepts."""
    return tuple(_ACTIVATIONS)


def scale_widths(hidden_dims: tuple[int, ...], width: float) -> tuple[int, ...]:
    """Multiply every hidden width by ``width`` (the capacity knob), keeping each >= 1.

    >>> scale_widths((64, 32), 0.5), scale_widths((64, 32), 2.0)
    ((32, 16), (128, 64))
    """
    return tuple(max(1, round(h * width)) for h in hidden_dims)


class ConditionEncoder(nn.Module):
    """Turns a condition ``c`` into a dense vector the encoder and decoder both read.

    ``c`` is an ``(n, numeric + len(categories))`` float tensor: the numeric context
    values (already scaled) first, then one integer category code per categorical column.
    Each categorical column gets its own embedding table.
    """

    def __init__(self, numeric: int, categories: tuple[int, ...], embedding_dim: int) -> None:
        super().__init__()
        self.numeric = numeric
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim) for n in categories)
        self.width = numeric + embedding_dim * len(categories)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        """``(n, numeric + n_categorical) -> (n, width)``."""
        expected = self.numeric + len(self.embeddings)
        if cond.ndim != 2 or cond.shape[1] != expected:
            msg = f"condition must have shape (n, {expected}), got {tuple(cond.shape)}"
            raise ValueError(msg)
        parts = [cond[:, : self.numeric]]
        for i, table in enumerate(self.embeddings):
            codes = cond[:, self.numeric + i].long()
            parts.append(table(codes))
        return torch.cat(parts, dim=1)
