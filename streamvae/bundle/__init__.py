"""Model bundles: save, load, and score with them."""

from __future__ import annotations

from streamvae.bundle.compat import check_replacement, probe
from streamvae.bundle.detector import Detector, Scored
from streamvae.bundle.io import (
    ModelBundle,
    TabularPreprocess,
    load_bundle,
    read_thresholds,
    runtime_versions,
    save_bundle,
    write_thresholds,
)

__all__ = [
    "Detector",
    "ModelBundle",
    "Scored",
    "TabularPreprocess",
    "check_replacement",
    "load_bundle",
    "probe",
    "read_thresholds",
    "runtime_versions",
    "save_bundle",
    "write_thresholds",
]
