from __future__ import annotations

import numpy as np
import pytest

from streamvae.reports import CalibrationReport, average_precision, draw, write_report
from streamvae.thresholds import calibrate_percentile, calibrate_pot, precision_recall_curve
from streamvae.thresholds.calibrate import Bootstrap

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    return rng.gamma(3.0, 10.0, size=2000), rng.gamma(6.0, 15.0, size=150)


def _legend_texts(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_a_labelled_tail_report_draws_scores_alert_rate_and_precision_recall(tmp_path, scores):
    normal, odd = scores
    boot = Bootstrap(n_resamples=100)
    threshold = calibrate_pot(normal, 0.001, score_kind="neg_elbo", bootstrap=boot)
    labels = np.r_[np.zeros(normal.size), np.ones(odd.size)].astype(int)
    curve = precision_recall_curve(labels, np.r_[normal, odd])
    report = CalibrationReport(
        "fraud v3 <neg_elbo>", threshold, normal, odd, curve, {"model": "fraud & co v3"}
    )
    figure = draw(report)
    scores_ax, rate_ax, pr_ax = figure.axes
    assert any("bootstrap interval" in t for t in _legend_texts(scores_ax))
    assert any("labelled anomalies (150)" in t for t in _legend_texts(scores_ax))
    assert any(t.startswith("Pareto tail fit") for t in _legend_texts(rate_ax))
    assert rate_ax.get_yscale() == "log"
    assert any(t.startswith("at the threshold: P=") for t in _legend_texts(pr_ax))

    files = write_report(report, tmp_path / "out", "fraud-v3-calibration")
    assert files.png.read_bytes().startswith(PNG_SIGNATURE)
    page = files.html.read_text(encoding="utf-8")
    assert page.count("<svg") == 1 and "<script" not in page and 'src="http' not in page
    assert "fraud &amp; co v3" in page and "fraud v3 &lt;neg_elbo&gt;" in page


def test_without_labels_two_panels_and_no_tail_curve_for_a_percentile(scores):
    normal, _ = scores
    report = CalibrationReport("m v1", calibrate_percentile(normal, 99.0, score_kind="kl"), normal)
    figure = draw(report)
    assert len(figure.axes) == 2
    assert not any("Pareto" in t for t in _legend_texts(figure.axes[1]))
    assert figure.axes[0].get_xscale() == "linear"  # one order of magnitude: linear bins


def test_scores_spanning_orders_of_magnitude_get_a_log_axis():
    normal = np.random.default_rng(1).lognormal(0.0, 2.0, size=1000)
    report = CalibrationReport("m v1", calibrate_percentile(normal, 99.0, score_kind="kl"), normal)
    assert draw(report).axes[0].get_xscale() == "log"


def test_average_precision_matches_scikit_learn(scores):
    from sklearn.metrics import average_precision_score

    normal, odd = scores
    labels = np.r_[np.zeros(normal.size), np.ones(odd.size)].astype(int)
    values = np.r_[normal, odd]
    expected = average_precision_score(labels, values)
    assert average_precision(precision_recall_curve(labels, values)) == pytest.approx(expected)


def test_a_report_needs_normal_scores():
    threshold = calibrate_percentile(np.arange(200.0), 99.0, score_kind="kl")
    with pytest.raises(ValueError, match="normal calibration scores"):
        CalibrationReport("m", threshold, np.zeros(0))
