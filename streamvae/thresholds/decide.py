"""Pure decisions: which scores are anomalous."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def classify(scores: npt.ArrayLike, threshold: float) -> npt.NDArray[np.bool_]:
    """``scores > threshold``, strictly (a score equal to the threshold is normal).

    >>> classify([0.5, 1.0, 1.5], 1.0).tolist()
    [False, False, True]
    """
    return np.asarray(scores, dtype=np.float64) > threshold
