"""Model families and the explicit registry the CLI, bundles and the contract test use."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

from streamvae.models.base import BaseVAE, ElboTerms, LossTerms, VAEOutput
from streamvae.models.vae import VAE, VAEConfig


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How to build one registered model family."""

    config_cls: type[Any]
    model_cls: type[BaseVAE]
    summary: str


MODEL_REGISTRY: Final[dict[str, ModelSpec]] = {
    "vae": ModelSpec(VAEConfig, VAE, "Gaussian VAE / beta-VAE with MLP encoder and decoder"),
}


def model_spec(key: str) -> ModelSpec:
    """Look up a registered family by key.

    Raises:
        KeyError: with the known keys, when ``key`` is not registered.
    """
    try:
        return MODEL_REGISTRY[key]
    except KeyError:
        msg = f"unknown model {key!r}; registered models: {sorted(MODEL_REGISTRY)}"
        raise KeyError(msg) from None


def config_from_dict(key: str, values: dict[str, Any]) -> Any:
    """Build the config dataclass of family ``key`` from plain values (lists become tuples).

    Raises:
        KeyError: unknown family.
        ValueError: unknown or invalid field.
    """
    spec = model_spec(key)
    known = {f.name for f in fields(spec.config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        msg = f"unknown {key} config field(s) {unknown}; known: {sorted(known)}"
        raise ValueError(msg)
    cleaned = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return spec.config_cls(**cleaned)


def build_model(key: str, config: Any) -> BaseVAE:
    """Instantiate family ``key`` from its config dataclass."""
    return model_spec(key).model_cls(config)


__all__ = [
    "MODEL_REGISTRY",
    "VAE",
    "BaseVAE",
    "ElboTerms",
    "LossTerms",
    "ModelSpec",
    "VAEConfig",
    "VAEOutput",
    "build_model",
    "config_from_dict",
    "model_spec",
]
