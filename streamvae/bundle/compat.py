"""Whether a new bundle can replace the one being served without changing the input contract."""

from __future__ import annotations

import numpy as np

from streamvae.bundle.detector import Detector
from streamvae.bundle.image import ImageDetector, ImagePreprocess
from streamvae.bundle.io import ModelBundle, TabularPreprocess
from streamvae.bundle.model import thresholds_in_force
from streamvae.bundle.window import WindowDetector, WindowPreprocess
from streamvae.errors import ModelLoadError, NotCalibratedError


def check_replacement(current: ModelBundle, candidate: ModelBundle) -> None:
    """Refuse a candidate that would read the same messages differently, or cannot decide.

    The candidate must take the same input: the same feature names in the same order and the
    same context fields (feature vectors), or the same window spec and calendar conditioning
    (KPI windows: the live windows are kept across the swap). It must carry thresholds.
    Model family, size, scaler and score kind may change.

    Raises:
        ModelLoadError: with the first incompatibility.
    """
    _same_input(current.preprocess, candidate.preprocess)
    try:
        thresholds_in_force(candidate.threshold)
    except NotCalibratedError as exc:
        raise ModelLoadError(str(exc)) from exc


def _same_input(
    old: TabularPreprocess | WindowPreprocess | ImagePreprocess,
    new: TabularPreprocess | WindowPreprocess | ImagePreprocess,
) -> None:
    if type(old) is not type(new):
        msg = f"input kind changed: {_kind(old)} -> {_kind(new)}"
        raise ModelLoadError(msg)
    if isinstance(old, TabularPreprocess) and isinstance(new, TabularPreprocess):
        if old.schema.names != new.schema.names:
            added = sorted(set(new.schema.names) - set(old.schema.names))
            removed = sorted(set(old.schema.names) - set(new.schema.names))
            what = f"added {added[:5]}, removed {removed[:5]}" if added or removed else "reordered"
            msg = f"feature schema changed ({what})"
            raise ModelLoadError(msg)
        if old.context != new.context:
            msg = "context fields changed"
            raise ModelLoadError(msg)
    elif isinstance(old, ImagePreprocess) and isinstance(new, ImagePreprocess):
        if old.shape != new.shape:
            msg = f"image shape changed: {old.shape.as_tuple()} -> {new.shape.as_tuple()}"
            raise ModelLoadError(msg)
    elif isinstance(old, WindowPreprocess) and isinstance(new, WindowPreprocess):
        if old.spec != new.spec:
            msg = f"window spec changed: {old.spec} -> {new.spec}"
            raise ModelLoadError(msg)
        if old.calendar != new.calendar or old.utc_offset_ms != new.utc_offset_ms:
            msg = "calendar conditioning changed"
            raise ModelLoadError(msg)


def probe(bundle: ModelBundle, *, device: str = "cpu") -> Detector | WindowDetector | ImageDetector:
    """Build the bundle's detector and score one typical input; the score must be finite.

    Raises:
        ModelLoadError: the weights do not load, or the probe score is not finite.
    """
    preprocess = bundle.preprocess
    detector: Detector | WindowDetector | ImageDetector
    if isinstance(preprocess, ImagePreprocess):
        image_detector = ImageDetector(bundle, device=device)
        grey = np.full((1, preprocess.shape.pixels), 0.5, np.float32)
        score = image_detector.select(image_detector.score(grey))
        detector = image_detector
    elif isinstance(preprocess, TabularPreprocess):
        detector = Detector(bundle, device=device)
        row = np.asarray(preprocess.scaler.mean, np.float32)[None, :]
        context = (
            np.zeros((1, preprocess.context.width), np.float32)
            if detector.conditional and preprocess.context is not None
            else None
        )
        score = detector.select(detector.score(row, context))
    else:
        window_detector = WindowDetector(bundle, device=device)
        n = preprocess.spec.window_len
        center = preprocess.fallback.center
        scored = window_detector.score(
            ["probe"], np.full((1, n), center), np.ones((1, n)), np.zeros(1, np.int64)
        )
        # the stream score of a first point is always 0: its residual is what can fail
        streaming = window_detector.streaming
        score = scored.last_point if streaming else window_detector.select(scored)
        detector = window_detector
    if not np.all(np.isfinite(score)):
        msg = f"the model's score of a typical input is not finite ({score.tolist()})"
        raise ModelLoadError(msg)
    return detector


def _kind(preprocess: TabularPreprocess | WindowPreprocess | ImagePreprocess) -> str:
    if isinstance(preprocess, ImagePreprocess):
        return "images"
    return "feature vectors" if isinstance(preprocess, TabularPreprocess) else "KPI windows"
