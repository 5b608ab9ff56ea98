"""Model families and the explicit registry the CLI, bundles and the contract test use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from streamvae.models.base import BaseVAE, ElboTerms, LossTerms, VAEOutput
from streamvae.models.conditional import CVAE, DCVAE, ConditionalVAEConfig
from streamvae.models.conv1d import Conv1dCVAE, Conv1dVAE, Conv1dVAEConfig
from streamvae.models.conv2d import Conv2dStemVAEConfig, Conv2dVAE, Conv2dVAEConfig
from streamvae.models.likelihood import ImportanceEstimate, importance_nll, latent_noise
from streamvae.models.sparse import SparseVAE
from streamvae.models.vae import VAE, VAEConfig
from streamvae.types import MODEL_KINDS


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How to build one registered model family, and which input kinds it serves.

    Attributes:
        config_cls: the family's config dataclass.
        model_cls: the network.
        summary: one line for people.
        kinds: the input kinds it fits (``tabular``, ``window``, ``image``: the keys of
            ``streamvae.bundle.INPUT_KINDS``), as ``streamvae.types.MODEL_KINDS`` lists them
            for the command line (which names families without importing torch).
    """

    config_cls: type[Any]
    model_cls: type[BaseVAE]
    summary: str
    kinds: frozenset[str]

    @property
    def conditional(self) -> bool:
        """Whether the family needs the record's context as its condition."""
        return self.model_cls.conditional

    @property
    def params(self) -> tuple[str, ...]:
        """The hyper-parameters of its config that ``model.params`` / ``--param`` may set.

        Everything but what the data fixes (``DERIVED_FIELDS``: the input's width, the
        image's shape, the condition's shape).

        >>> MODEL_REGISTRY["conv1d_vae"].params[-3:]
        ('channels', 'kernel_size', 'embedding_dim')
        """
        return tuple(f.name for f in fields(self.config_cls) if f.name not in DERIVED_FIELDS)


DERIVED_FIELDS: Final = frozenset(
    {
        "input_dim",
        "cond_numeric",
        "cond_categories",
        "image_channels",
        "image_height",
        "image_width",
    }
)
"""Config fields the data fixes (the input's width, the image's and the condition's shape)."""

MODEL_REGISTRY: Final[dict[str, ModelSpec]] = {
    "vae": ModelSpec(
        VAEConfig,
        VAE,
        "Gaussian VAE / beta-VAE with MLP encoder and decoder; learn_variance: trained gamma",
        MODEL_KINDS["vae"],
    ),
    "sparse_vae": ModelSpec(
        VAEConfig,
        SparseVAE,
        "Sparse VAE: variational-dropout latent, pruned dimensions",
        MODEL_KINDS["sparse_vae"],
    ),
    "cvae": ModelSpec(
        ConditionalVAEConfig,
        CVAE,
        "conditional VAE on the record's context",
        MODEL_KINDS["cvae"],
    ),
    "dcvae": ModelSpec(
        ConditionalVAEConfig,
        DCVAE,
        "disentangled CVAE: learned conditional prior r(z_i | c)",
        MODEL_KINDS["dcvae"],
    ),
    "conv1d_vae": ModelSpec(
        Conv1dVAEConfig,
        Conv1dVAE,
        "KPI windows: 1-D convolutional encoder and decoder",
        MODEL_KINDS["conv1d_vae"],
    ),
    "conv1d_cvae": ModelSpec(
        Conv1dVAEConfig,
        Conv1dCVAE,
        "KPI windows: 1-D convolutional CVAE (e.g. calendar)",
        MODEL_KINDS["conv1d_cvae"],
    ),
    "conv2d_vae": ModelSpec(
        Conv2dVAEConfig,
        Conv2dVAE,
        "images: fully convolutional 16-32-64-256 (localisation)",
        MODEL_KINDS["conv2d_vae"],
    ),
    "conv2d_vae_stem": ModelSpec(
        Conv2dStemVAEConfig,
        Conv2dVAE,
        "images: 64-128-256 encoder, linear stem decoder",
        MODEL_KINDS["conv2d_vae_stem"],
    ),
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


def with_params(key: str, values: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """The config values of family ``key``: ``values`` plus its family-specific ``params``.

    Raises:
        ValueError: a param the data fixes, one the common settings already set (set that
            setting instead), or one the family does not take (the message lists them).
    """
    fixed = sorted(set(params) & DERIVED_FIELDS)
    if fixed:
        msg = f"model params {fixed} are fixed by the data"
        raise ValueError(msg)
    both = sorted(set(params) & set(values))
    if both:
        msg = f"model params {both} have settings of their own: set those instead"
        raise ValueError(msg)
    allowed = model_spec(key).params
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        msg = f"model {key!r} takes no param {unknown}; its params: {list(allowed)}"
        raise ValueError(msg)
    return dict(values) | dict(params)


def build_model(key: str, config: Any) -> BaseVAE:
    """Instantiate family ``key`` from its config dataclass."""
    return model_spec(key).model_cls(config)


__all__ = [
    "CVAE",
    "DCVAE",
    "DERIVED_FIELDS",
    "MODEL_REGISTRY",
    "VAE",
    "BaseVAE",
    "ConditionalVAEConfig",
    "Conv1dCVAE",
    "Conv1dVAE",
    "Conv1dVAEConfig",
    "Conv2dStemVAEConfig",
    "Conv2dVAE",
    "Conv2dVAEConfig",
    "ElboTerms",
    "ImportanceEstimate",
    "LossTerms",
    "ModelSpec",
    "SparseVAE",
    "VAEConfig",
    "VAEOutput",
    "build_model",
    "config_from_dict",
    "importance_nll",
    "latent_noise",
    "model_spec",
    "with_params",
]
