from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from streamvae.scoring import average_precision, detection_report, roc_auc


@pytest.mark.parametrize("seed", range(5))
def test_auroc_and_ap_match_scikit_learn_including_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(size=300) + y, 1)  # rounding makes many ties
    assert roc_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert average_precision(y, scores) == pytest.approx(
        average_precision_score(y, scores), abs=1e-12
    )


def test_single_class_gives_nan():
    assert math.isnan(roc_auc([0, 0], [0.1, 0.2]))
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same length"):
        roc_auc([0, 1], [0.1])
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        roc_auc([0, 1], [0.1, np.nan])


def test_report_at_threshold():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.9, 0.8, 0.3])
    report = detection_report(y, s, threshold=0.5)
    assert (report.alerts, report.n, report.n_anomalies) == (2, 5, 2)
    assert report.precision == pytest.approx(0.5)
    assert report.recall == pytest.approx(0.5)
    assert report.f1 == pytest.approx(0.5)
    assert report.false_positive_rate == pytest.approx(1 / 3)


def test_report_with_no_alerts_has_undefined_precision():
    report = detection_report([0, 1], [0.1, 0.2], threshold=5.0)
    assert math.isnan(report.precision)
    assert report.recall == 0.0
