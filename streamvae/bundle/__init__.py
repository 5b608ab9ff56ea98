"""Model bundles: save, load, and score with them; the input kinds they can hold."""

from __future__ import annotations

from streamvae.bundle.compat import check_replacement, probe
from streamvae.bundle.io import (
    ModelBundle,
    load_bundle,
    read_thresholds,
    runtime_versions,
    save_bundle,
    write_thresholds,
)
from streamvae.bundle.kinds import INPUT_KINDS, Detector, InputKind, Preprocess, input_kind
from streamvae.bundle.tabular import Scored, TabularDetector, TabularPreprocess

__all__ = [
    "INPUT_KINDS",
    "Detector",
    "InputKind",
    "ModelBundle",
    "Preprocess",
    "Scored",
    "TabularDetector",
    "TabularPreprocess",
    "check_replacement",
    "input_kind",
    "load_bundle",
    "probe",
    "read_thresholds",
    "runtime_versions",
    "save_bundle",
    "write_thresholds",
]
