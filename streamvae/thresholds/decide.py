"""Pure decisions: which scores are anomalous, and how severe."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streamvae.thresholds.calibrate import Threshold


def classify(scores: npt.ArrayLike, threshold: float) -> npt.NDArray[np.bool_]:
    """``scores > threshold``, strictly (a score equal to the threshold is normal).

    >>> classify([0.5, 1.0, 1.5], 1.0).tolist()
    [False, False, True]
    """
    return np.asarray(scores, dtype=np.float64) > threshold


def severities(scores: npt.ArrayLike, threshold: Threshold) -> npt.NDArray[np.str_]:
    """Severity per score: ``""`` (normal), ``"warning"`` or ``"critical"``.

    A score is critical when it exceeds ``threshold.critical_value`` (if one was calibrated).
    """
    arr = np.asarray(scores, dtype=np.float64)
    out = np.full(arr.shape, "", dtype="<U8")
    out[classify(arr, threshold.value)] = "warning"
    if threshold.critical_value is not None:
        out[classify(arr, max(threshold.critical_value, threshold.value))] = "critical"
    return out
