"""Shared building blocks: MLP stacks."""

from __future__ import annotations

from typing import Literal

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


def activation_names() -> tuple[str, ...]:
    """The activations ``mlp`` accepts."""
    return tuple(_ACTIVATIONS)
