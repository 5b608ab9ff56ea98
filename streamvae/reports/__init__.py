"""Reports drawn from results: the calibration report (PNG and self-contained HTML)."""

from __future__ import annotations

from streamvae.reports.calibration import (
    CalibrationReport,
    ReportFiles,
    average_precision,
    draw,
    report_stem,
    threshold_facts,
    write_report,
)

__all__ = [
    "CalibrationReport",
    "ReportFiles",
    "average_precision",
    "draw",
    "report_stem",
    "threshold_facts",
    "write_report",
]
