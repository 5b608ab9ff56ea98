"""Seeded index splits for training, validation, calibration and testing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Index = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class NoveltySplit:
    """Row indices of a novelty-detection split (train and calibrate on normals only)."""

    train: Index
    calibration: Index
    test: Index


def shuffled(n: int, seed: int) -> Index:
    """A seeded permutation of ``range(n)``."""
    return np.random.default_rng(seed).permutation(n).astype(np.intp)


def split_fraction(index: Index, fraction: float) -> tuple[Index, Index]:
    """Split ``index`` into its first ``1 - fraction`` and last ``fraction`` parts.

    Raises:
        ValueError: fraction outside [0, 1).
    """
    if not 0.0 <= fraction < 1.0:
        msg = f"fraction must be in [0, 1), got {fraction}"
        raise ValueError(msg)
    cut = len(index) - round(len(index) * fraction)
    return index[:cut], index[cut:]


def novelty_split(
    labels: npt.NDArray[np.int8],
    *,
    seed: int,
    train_fraction: float = 0.6,
    calibration_fraction: float = 0.0,
) -> NoveltySplit:
    """ADBench novelty protocol: shuffle normals; train on ``train_fraction`` of them.

    ``calibration_fraction`` of the normals is held out for threshold calibration; the
    remaining normals and all anomalies form the test set.

    Raises:
        ValueError: fractions that do not leave a test set.
    """
    if not 0.0 < train_fraction < 1.0 or not 0.0 <= calibration_fraction < 1.0 - train_fraction:
        msg = f"bad fractions: train {train_fraction}, calibration {calibration_fraction}"
        raise ValueError(msg)
    normals = np.flatnonzero(labels == 0)
    normals = normals[shuffled(len(normals), seed)]
    n_train = round(len(normals) * train_fraction)
    n_cal = round(len(normals) * calibration_fraction)
    test = np.concatenate([normals[n_train + n_cal :], np.flatnonzero(labels == 1)])
    return NoveltySplit(
        train=normals[:n_train],
        calibration=normals[n_train : n_train + n_cal],
        test=np.sort(test),
    )
