"""The calibration report: what a threshold means, as pictures (PNG and a self-contained HTML).

Three panels, drawn from the calibration itself:

1. **Scores**: the histogram of the held-out normal scores the threshold was calibrated on
   (and of the labelled anomalies, when there are some), the threshold as a line and its
   bootstrap interval as a band. Scores spanning orders of magnitude are binned on a log axis.
2. **Alert rate**: the share of normal scores above each value (the empirical survival
   function, log scale): where the threshold crosses it is the alert rate to expect on normal
   traffic. A generalised-Pareto tail fit (``--tail``) is drawn over it, with its threshold.
3. **Precision / recall** (labelled data only): the curve, its average precision, and the
   operating point the threshold gives.

matplotlib is imported when a report is drawn, never at import time (the CLI stays fast).
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from streamvae.thresholds import PRCurve, Threshold

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

F64 = npt.NDArray[np.float64]
NORMAL_COLOUR = "#1f77b4"
ANOMALY_COLOUR = "#d62728"
THRESHOLD_COLOUR = "#222222"
TAIL_COLOUR = "#ff7f0e"
LOG_SPAN = 100.0  # positive scores whose 99th / 1st percentile exceeds this get a log axis


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    """Everything one report draws.

    Attributes:
        title: the headline (model, version, score kind).
        threshold: the default threshold in force (its interval, rates and tail fit).
        normal_scores: the normal calibration scores it was set on.
        anomaly_scores: scores of labelled anomalies, if the data had some.
        pr_curve: precision/recall of ``score > t`` on labelled data.
        facts: labelled values shown as a table in the HTML and under the PNG's title.
    """

    title: str
    threshold: Threshold
    normal_scores: F64
    anomaly_scores: F64 | None = None
    pr_curve: PRCurve | None = None
    facts: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if np.asarray(self.normal_scores).size == 0:
            msg = "a calibration report needs the normal calibration scores"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """Where a report was written."""

    png: Path
    html: Path


def threshold_facts(t: Threshold) -> dict[str, str]:
    """The threshold's figures as labelled strings (the table at the top of the HTML)."""
    facts = {
        "score": t.score_kind,
        "threshold": f"{t.value:.6g}",
        "method": t.method
        + (f" (percentile {t.percentile:g})" if t.percentile is not None else "")
        + (f" (target rate {t.target_fpr:.3g})" if t.target_fpr is not None else ""),
        "calibration records (normal)": str(t.n_calibration),
        "expected alert rate on normal traffic": _percent(t.expected_alert_rate),
        "alert rate on the calibration records": _percent(t.empirical_alert_rate),
    }
    if t.value_interval is not None and t.interval_level is not None:
        lo, hi = t.value_interval
        facts["threshold interval"] = f"[{lo:.6g}, {hi:.6g}] ({t.interval_level:.0%} bootstrap)"
    if t.extrapolated:
        facts["extrapolated"] = "rarer than 1/(n+1): from the tail model, not observed data"
    if t.created_at:
        facts["calibrated at"] = t.created_at
    return facts


def report_stem(name: str, version: str) -> str:
    """A file name for a model version's report: ``fraud-v3-calibration``.

    >>> report_stem("fraud/eu", "3"), report_stem("", "")
    ('fraud_eu-v3-calibration', 'model-calibration')
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "model"
    return f"{safe}-v{version}-calibration" if version else f"{safe}-calibration"


def write_report(report: CalibrationReport, directory: Path, stem: str) -> ReportFiles:
    """Draw ``report`` once; write ``stem.png`` and ``stem.html`` (same plots) to ``directory``."""
    import matplotlib

    directory.mkdir(parents=True, exist_ok=True)
    figure = draw(report)
    try:
        png = directory / f"{stem}.png"
        figure.savefig(png, format="png", dpi=110)
        svg = io.StringIO()
        with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: searchable
            figure.savefig(svg, format="svg")
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)
    page = directory / f"{stem}.html"
    page.write_text(html_page(report, svg.getvalue()), encoding="utf-8")
    return ReportFiles(png, page)


def draw(report: CalibrationReport) -> Figure:
    """The report's figure: scores, alert rate and (with labels) precision/recall."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = 3 if report.pr_curve is not None and report.pr_curve.n_positive else 2
    figure, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.6), layout="constrained")
    t = report.threshold
    rate = _percent(t.expected_alert_rate)
    figure.suptitle(
        f"{report.title}\nthreshold {t.value:.4g} ({t.method}), expected alert rate {rate} "
        f"on normal traffic, {t.n_calibration} normal scores",
        fontsize=11,
    )
    _draw_scores(axes[0], report)
    _draw_alert_rate(axes[1], report)
    if panels == 3 and report.pr_curve is not None:
        _draw_precision_recall(axes[2], report.pr_curve, t.value)
    return figure


def _draw_scores(ax: Axes, report: CalibrationReport) -> None:
    normal = np.asarray(report.normal_scores, dtype=np.float64)
    anomalies = None if report.anomaly_scores is None else np.asarray(report.anomaly_scores)
    everything = normal if anomalies is None or not anomalies.size else np.r_[normal, anomalies]
    t = report.threshold
    log_axis = _wants_log_axis(everything)
    bins = _bins(everything, log_axis).tolist()
    # each histogram sums to 1 (a share per bin, right on log bins too, unlike a density)
    share = np.full(normal.size, 1.0 / normal.size)
    label = f"held-out normals ({normal.size})"
    ax.hist(normal, bins=bins, weights=share, alpha=0.6, color=NORMAL_COLOUR, label=label)
    if anomalies is not None and anomalies.size:
        share = np.full(anomalies.size, 1.0 / anomalies.size)
        label = f"labelled anomalies ({anomalies.size})"
        ax.hist(anomalies, bins=bins, weights=share, alpha=0.5, color=ANOMALY_COLOUR, label=label)
    if t.value_interval is not None:
        lo, hi = t.value_interval
        level = f"{t.interval_level:.0%} " if t.interval_level else ""
        ax.axvspan(lo, hi, color=THRESHOLD_COLOUR, alpha=0.15,
                   label=f"{level}bootstrap interval [{lo:.4g}, {hi:.4g}]")  # fmt: skip
    ax.axvline(t.value, color=THRESHOLD_COLOUR, linewidth=1.5, label=f"threshold {t.value:.4g}")
    if log_axis:
        ax.set_xscale("log")
    ax.set_xlabel(f"score ({t.score_kind}; higher is more anomalous)")
    ax.set_ylabel("share of records per bin")
    ax.set_title("Scores")
    ax.legend(fontsize=8, loc="best")


def _draw_alert_rate(ax: Axes, report: CalibrationReport) -> None:
    scores = np.sort(np.asarray(report.normal_scores, dtype=np.float64))
    n = scores.size
    survival = (n - np.arange(1, n + 1) + 0.5) / (n + 1)  # never 0 on a log axis
    t = report.threshold
    ax.step(scores, survival, where="post", color=NORMAL_COLOUR, label="normal scores above t")
    tail = _tail_curve(t, scores)
    if tail is not None:
        xs, ys = tail
        ks = t.diagnostics.get("ks_pvalue")
        fit = f" (KS p={ks:.2g})" if ks is not None else ""
        ax.plot(xs, ys, color=TAIL_COLOUR, linestyle="--", label=f"Pareto tail fit{fit}")
    ax.axvline(t.value, color=THRESHOLD_COLOUR, linewidth=1.5, label=f"threshold {t.value:.4g}")
    expected = t.expected_alert_rate
    if expected > 0:
        ax.axhline(expected, color=ANOMALY_COLOUR, linestyle=":",
                   label=f"expected alert rate {_percent(expected)}")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(bottom=min(0.5 / (n + 1), expected / 3 if expected > 0 else 1.0), top=1.2)
    if _wants_log_axis(scores):
        ax.set_xscale("log")
    ax.set_xlabel("score t")
    ax.set_ylabel("share of normal scores above t")
    ax.set_title("Alert rate on normal traffic")
    ax.legend(fontsize=8, loc="lower left")


def _draw_precision_recall(ax: Axes, curve: PRCurve, threshold: float) -> None:
    keep = np.isfinite(curve.precision)
    recall, precision = curve.recall[keep], curve.precision[keep]
    ap = average_precision(curve)
    ax.plot(recall, precision, color=ANOMALY_COLOUR, label=f"average precision {ap:.3f}")
    base = curve.n_positive / max(curve.n_positive + curve.n_negative, 1)
    ax.axhline(base, color="grey", linestyle=":", label=f"chance {base:.3f}")
    at = int(np.searchsorted(curve.thresholds, threshold, side="right")) - 1
    at = min(max(at, 0), curve.thresholds.size - 1)
    p, r = float(curve.precision[at]), float(curve.recall[at])
    if math.isfinite(p):
        label = f"at the threshold: P={p:.2f}, R={r:.2f}"
        ax.plot([r], [p], "o", color=THRESHOLD_COLOUR, label=label)
    ax.set_xlim(0.0, 1.02)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Precision / recall ({curve.n_positive} anomalies)")
    ax.legend(fontsize=8, loc="lower left")


def average_precision(curve: PRCurve) -> float:
    """Average precision: precision summed over the recall steps (as scikit-learn computes it)."""
    keep = np.isfinite(curve.precision)
    recall, precision = curve.recall[keep][::-1], curve.precision[keep][::-1]
    if recall.size == 0:
        return float("nan")
    steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(steps * precision))


def _tail_curve(t: Threshold, scores: F64) -> tuple[F64, F64] | None:
    """The fitted tail's share above t, from its threshold ``u`` to past the threshold."""
    d = t.diagnostics
    if t.method != "pot" or not {"u", "xi", "sigma", "n_excesses"} <= d.keys():
        return None
    u, xi, sigma = d["u"], d["xi"], d["sigma"]
    share = d["n_excesses"] / scores.size
    xs = np.linspace(u, max(t.value, float(scores[-1])) * 1.02 + 1e-12, 200)
    x = (xs - u) / sigma
    if abs(xi) < 1e-9:
        sf = np.exp(-x)
    else:
        base = np.maximum(1.0 + xi * x, 0.0)
        with np.errstate(divide="ignore"):
            sf = np.where(base > 0, base ** (-1.0 / xi), 0.0)
    keep = sf > 0
    return xs[keep], share * sf[keep]


def _wants_log_axis(scores: F64) -> bool:
    if scores.size < 2 or np.min(scores) <= 0:
        return False
    lo, hi = np.percentile(scores, [1, 99])
    return bool(lo > 0 and hi / lo > LOG_SPAN)


def _bins(scores: F64, log_axis: bool) -> F64:
    lo, hi = float(np.min(scores)), float(np.max(scores))
    if hi <= lo:
        return np.array([lo - 0.5, hi + 0.5])
    count = int(np.clip(math.sqrt(scores.size) * 2, 20, 80))
    return np.geomspace(lo, hi, count + 1) if log_axis else np.linspace(lo, hi, count + 1)


def _percent(rate: float) -> str:
    return f"{rate:.3%}" if rate < 0.001 else f"{rate:.2%}"


def html_page(report: CalibrationReport, svg: str) -> str:
    """A page with the facts and the figure inline (SVG): opens anywhere, loads nothing."""
    body = svg[svg.find("<svg") :] if "<svg" in svg else svg
    rows = "\n".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>"
        for key, value in report.facts.items()
    )
    title = html.escape(report.title)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ text-align: left; padding: 0.25em 1em 0.25em 0; border-bottom: 1px solid #ddd; }}
th {{ font-weight: 600; }}
svg {{ max-width: 100%; height: auto; }}
</style>
</head>
<body>
<h1>{title}</h1>
<table>
{rows}
</table>
<figure>
{body}
<figcaption>Left: scores of the normals the threshold was calibrated on (and of labelled
anomalies), with the threshold and its bootstrap interval. Middle: the share of normal scores
above each value, which is the alert rate to expect on normal traffic at that threshold.
Right, with labels: precision and recall of flagging scores above each value.</figcaption>
</figure>
</body>
</html>
"""
