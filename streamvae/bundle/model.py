"""What both detectors need from a bundle: its model with the weights in, its thresholds."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from streamvae.errors import ModelLoadError, NotCalibratedError
from streamvae.models import BaseVAE, build_model, config_from_dict
from streamvae.thresholds import ThresholdSet


def load_model(
    model_key: str, model_config: dict[str, Any], state_dict: dict[str, torch.Tensor]
) -> tuple[BaseVAE, Any]:
    """Build family ``model_key`` from its config values and load the weights (strict).

    Returns:
        The model (on the CPU, train mode as built) and its config dataclass.

    Raises:
        ModelLoadError: the weights do not fit the model.
    """
    config = config_from_dict(model_key, model_config)
    model = build_model(model_key, config)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        msg = f"weights do not fit model {model_key!r} {asdict(config)}: {exc}"
        raise ModelLoadError(msg) from exc
    return model, config


def thresholds_in_force(threshold: ThresholdSet | None) -> ThresholdSet:
    """The bundle's thresholds.

    Raises:
        NotCalibratedError: the bundle has none.
    """
    if threshold is None:
        msg = "the model has no threshold: run `streamvae calibrate` first"
        raise NotCalibratedError(msg)
    return threshold
