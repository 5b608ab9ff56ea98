"""The research experiments the notebooks run (trade-off, learnable variance, dCVAE).

Notebooks only call these and display the results, so nothing lives only in a notebook.
Data: the ADBench cardio set shipped in the package, and scikit-learn's handwritten
``digits`` (8x8 images, bundled with scikit-learn: no download). ``fast=True`` (or the
environment variable ``STREAMVAE_FAST=1``) shrinks epochs and repetitions so CI can
execute every notebook in seconds; the committed notebooks hold full-run outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from streamvae.bundle import TabularDetector, TabularPreprocess
from streamvae.data import ContextSchema, FeatureSchema, StandardScaler, load_builtin
from streamvae.data.splits import novelty_split
from streamvae.models import config_from_dict, model_spec
from streamvae.scoring import diagnose, roc_auc
from streamvae.training import BetaSchedule, TrainConfig
from streamvae.types import ScoreKind
from streamvae.workflows.fitting import fit_bundle

F32 = npt.NDArray[np.float32]


def fast_mode(default: bool = False) -> bool:
    """Whether to run the small version (``STREAMVAE_FAST=1`` turns it on)."""
    return os.environ.get("STREAMVAE_FAST", "1" if default else "0") not in ("", "0", "false")


@dataclass(frozen=True, slots=True)
class Split:
    """Novelty-detection data: train on normal rows, test on normal + abnormal rows.

    ``c_train`` / ``c_test`` hold a category code per row when the data has a condition.
    """

    name: str
    x_train: F32
    x_test: F32
    y_test: npt.NDArray[np.int8]
    c_train: F32 | None = None
    c_test: F32 | None = None
    categories: tuple[str, ...] = ()


def cardio_split(seed: int = 0) -> Split:
    """ADBench cardio: train on 60 % of the normal rows, test on the rest + all anomalies."""
    table = load_builtin("cardio")
    if table.labels is None:  # pragma: no cover - the shipped set is labelled
        msg = "the built-in cardio set has no labels"
        raise ValueError(msg)
    split = novelty_split(table.labels, seed=seed)
    return Split("cardio", table.features[split.train], table.features[split.test],
                 table.labels[split.test])  # fmt: skip


def _digits() -> tuple[F32, npt.NDArray[np.int64]]:
    from sklearn.datasets import load_digits  # dev/notebook dependency, bundled data

    digits = load_digits()
    return digits.data.astype(np.float32), digits.target.astype(np.int64)


def nearest_centroid(x_train: F32, y_train: npt.NDArray[np.int64], x: F32) -> npt.NDArray[np.int64]:
    """The class of the nearest training-class centroid: a stand-in upstream classifier."""
    classes = np.unique(y_train)
    centroids = np.stack([x_train[y_train == c].mean(axis=0) for c in classes])
    distances = ((x[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return np.asarray(classes[distances.argmin(axis=1)], dtype=np.int64)


def digits_split(outlier_classes: tuple[int, ...], seed: int = 0) -> Split:
    """Digits: the ``outlier_classes`` are the anomalies, the other digits normal.

    The condition of each image is the class an upstream classifier assigns it (nearest
    normal-class centroid, fitted on the training images): for normal images that is
    nearly always the true digit, for an unseen digit the closest normal one. It is
    known for every record at scoring time, as a context should be.
    """
    x, y = _digits()
    abnormal = np.isin(y, outlier_classes)
    split = novelty_split(abnormal.astype(np.int8), seed=seed)
    y_train = y[split.train]
    claimed_train = y_train
    claimed_test = nearest_centroid(x[split.train], y_train, x[split.test])
    normal_classes = tuple(sorted(set(range(10)) - set(outlier_classes)))
    code = {c: i for i, c in enumerate(normal_classes)}
    c_train = np.array([[code[int(c)]] for c in claimed_train], dtype=np.float32)
    c_test = np.array([[code[int(c)]] for c in claimed_test], dtype=np.float32)
    return Split(
        f"digits(outliers={list(outlier_classes)})",
        x[split.train],
        x[split.test],
        abnormal[split.test].astype(np.int8),
        c_train,
        c_test,
        tuple(str(c) for c in normal_classes),
    )


@dataclass(frozen=True, slots=True)
class RunResult:
    """One trained model's figures on a split."""

    family: str
    params: dict[str, Any]
    seed: int
    auroc: dict[str, float]
    normal_recon_mse: float
    latent_distance: float | None
    active_dims: int
    pruned_dims: int
    mmd_prior: float
    epochs_run: int
    final_metrics: dict[str, float] = field(default_factory=dict)
    scores: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """A flat table row (no arrays)."""
        return {"family": self.family, **self.params, "seed": self.seed,
                **{f"auroc_{k}": round(v, 4) for k, v in self.auroc.items()},
                "normal_recon_mse": round(self.normal_recon_mse, 4),
                "latent_distance": None if self.latent_distance is None
                else round(self.latent_distance, 3),
                "active_dims": self.active_dims, "pruned_dims": self.pruned_dims,
                "mmd_prior": round(self.mmd_prior, 4)}  # fmt: skip


def run(
    split: Split,
    family: str = "vae",
    *,
    seed: int = 0,
    epochs: int = 100,
    schedule: BetaSchedule | None = None,
    is_samples: int = 0,
    keep_scores: tuple[ScoreKind, ...] = (),
    **model: Any,
) -> RunResult:
    """Train ``family`` on the split's normal rows and measure it on the test rows.

    Args:
        split: the data.
        family: a registry key.
        seed: training seed.
        epochs: epoch budget (early stopping on a 20 % validation split, patience 20).
        schedule: beta schedule (default constant).
        is_samples: > 0 adds the importance-sampled scores with this many samples.
        keep_scores: score kinds whose per-row test scores to keep (e.g. for histograms).
        **model: model config values (latent_dim, hidden_dims, beta, width, ...).
    """
    scaler = StandardScaler.fit(split.x_train)
    conditional = model_spec(family).conditional
    context = None
    values = {"input_dim": split.x_train.shape[1], **model}
    if conditional:
        if split.c_train is None:
            msg = f"{family} needs a split with a condition"
            raise ValueError(msg)
        context = ContextSchema(categorical=(("class", split.categories),))
        values |= {"cond_numeric": 0, "cond_categories": (len(split.categories),)}
    config = config_from_dict(family, values)
    train_config = TrainConfig(
        epochs=epochs, patience=20, seed=seed, device="cpu", batch_size=64,
        beta_schedule=schedule or BetaSchedule(),
    )  # fmt: skip
    names = tuple(f"f{i}" for i in range(split.x_train.shape[1]))
    preprocess = TabularPreprocess(FeatureSchema(names), scaler, context)
    bundle, result = fit_bundle(
        family, config, scaler.transform(split.x_train), train_config, preprocess, "neg_elbo",
        cond=split.c_train if conditional else None, is_samples=max(is_samples, 1),
    )  # fmt: skip
    detector = TabularDetector(bundle)
    net = detector.model
    c_test = split.c_test if conditional else None
    scored = detector.score(split.x_test, c_test, sampled=is_samples > 0).scores
    kinds = list(scored.available())
    auroc: dict[str, float] = {k: roc_auc(split.y_test, scored.select(k)) for k in kinds}
    normal = split.y_test == 0
    x_test = torch.from_numpy(scaler.transform(split.x_test))
    cond_t = None if c_test is None else torch.from_numpy(c_test)
    diag = diagnose(net, x_test, cond_t, split.y_test, seed=seed)
    return RunResult(
        family=family,
        params={k: v for k, v in model.items() if k != "hidden_dims"}
        | ({"schedule": schedule.kind} if schedule else {}),
        seed=seed,
        auroc=auroc,
        normal_recon_mse=float(scored.per_feature[normal].mean()),
        latent_distance=diag.latent_distance,
        active_dims=diag.active_dims,
        pruned_dims=len(diag.pruned_dims),
        mmd_prior=diag.mmd_prior,
        epochs_run=result.epochs_run,
        final_metrics=result.history[result.best_epoch],
        scores={k: scored.select(k) for k in keep_scores},
    )
