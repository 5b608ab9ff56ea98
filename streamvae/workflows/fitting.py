"""The step every training shares: fit a registered family, wrap it as a bundle."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import numpy.typing as npt

from streamvae.bundle import ModelBundle, Preprocess
from streamvae.models import BaseVAE, build_model
from streamvae.training import FitResult, TrainConfig, TrainingCallback, fit
from streamvae.types import ScoreKind


def fit_bundle(
    family: str,
    config: Any,
    inputs: npt.NDArray[np.float32],
    train: TrainConfig,
    preprocess: Preprocess,
    score_kind: ScoreKind,
    *,
    callbacks: list[TrainingCallback] | None = None,
    cond: npt.NDArray[np.float32] | None = None,
    mask: npt.NDArray[np.float32] | None = None,
    meta: Mapping[str, Any] | None = None,
    is_samples: int = 64,
) -> tuple[ModelBundle, FitResult]:
    """Train family ``family`` (its ``config``) on the scaled ``inputs``; return the bundle.

    The bundle holds the best weights (on the CPU), ``preprocess`` and ``score_kind``; its
    ``meta`` records the best epoch, the epochs run and the device, then ``meta``.
    Thresholds and neighbour indexes are the caller's next steps.
    """
    model, result = fit(
        lambda: build_model(family, config), inputs, train, callbacks, cond=cond, mask=mask
    )
    bundle = bundle_of(family, config, model, result, preprocess, score_kind, meta, is_samples)
    return bundle, result


def bundle_of(
    family: str,
    config: Any,
    model: BaseVAE,
    result: FitResult,
    preprocess: Preprocess,
    score_kind: ScoreKind,
    meta: Mapping[str, Any] | None = None,
    is_samples: int = 64,
) -> ModelBundle:
    """The bundle of a trained model: CPU weights, provenance from the fit, then ``meta``."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    info = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run}
    return ModelBundle(
        family, asdict(config), state, preprocess, score_kind,
        meta=info | {"device": result.device} | dict(meta or {}), is_samples=is_samples,
    )  # fmt: skip
