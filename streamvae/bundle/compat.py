"""Whether a new bundle can replace the one being served without changing the input contract."""

from __future__ import annotations

import numpy as np

from streamvae.bundle.io import ModelBundle
from streamvae.bundle.kinds import Detector, input_kind
from streamvae.bundle.model import thresholds_in_force
from streamvae.errors import ModelLoadError, NotCalibratedError


def check_replacement(current: ModelBundle, candidate: ModelBundle) -> None:
    """Refuse a candidate that would read the same messages differently, or cannot decide.

    The candidate must be of the same input kind and take the same input, as its kind's
    ``input_change`` says: the same feature names in the same order and the same context
    fields (feature vectors), the same window spec and calendar conditioning (KPI windows:
    the live windows are kept across the swap), the same image shape (images). It must
    carry thresholds. Model family, size, scaler and score kind may change.

    Raises:
        ModelLoadError: with the first incompatibility.
    """
    old, new = current.preprocess, candidate.preprocess
    if old.KIND != new.KIND:
        msg = f"input kind changed: {input_kind(old).label} -> {input_kind(new).label}"
        raise ModelLoadError(msg)
    change = new.input_change(old)
    if change is not None:
        raise ModelLoadError(change)
    try:
        thresholds_in_force(candidate.threshold)
    except NotCalibratedError as exc:
        raise ModelLoadError(str(exc)) from exc


def probe(bundle: ModelBundle, *, device: str = "cpu") -> Detector:
    """Build the bundle's detector (its kind's) and score one typical input; it must be finite.

    Returns:
        the detector, ready to serve.

    Raises:
        ModelLoadError: the weights do not load, or the probe score is not finite.
    """
    detector: Detector = input_kind(bundle.preprocess).build(bundle, device=device)
    score = detector.probe()
    if not np.all(np.isfinite(score)):
        msg = f"the model's score of a typical input is not finite ({score.tolist()})"
        raise ModelLoadError(msg)
    return detector
