"""Peaks over threshold, shared by every tail the scores fit. Pure numpy.

Both the tabular fused score (:class:`streamvae.scoring.fusion.TailModel`, fitted once on
held-out normals) and the KPI stream score (:func:`streamvae.scoring.stream_scores.
log_tail_probability`, refitted on each series' recent values) model a score's survival
the same way: empirical up to the ``TAIL_LEVEL`` quantile ``t``, exponential beyond it with
the mean excess over ``t`` as its scale (a generalised Pareto tail of shape 0).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

TAIL_LEVEL = 0.9
"""Quantile where the exponential tail takes over from the empirical survival."""


def mean_excess(values: npt.NDArray[np.float64], t: float) -> float:
    """Mean of ``values - t`` over the values above ``t``, floored above zero.

    The floor (a millionth of the values' spread, of ``|t|`` or of 1, whichever is
    largest) keeps the tail finite when no value exceeds ``t`` or all are equal.

    >>> mean_excess(np.arange(10.0), 6.5), mean_excess(np.full(5, 2.0), 2.0)
    (1.5, 2e-06)
    """
    above = values[values > t] - t
    floor = max(float(values.max() - values.min()), abs(t), 1.0) * 1e-6
    return max(float(above.mean()) if above.size else floor, floor)
