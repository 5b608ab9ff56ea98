"""The only mlflow code: tracking store, runs, model logging, registry and thresholds."""

from __future__ import annotations

from streamvae.tracking.resolve import (
    ResolvedModel,
    VersionListing,
    alias_version,
    list_versions,
    load_resolved,
    record_for_version,
    record_thresholds,
    resolve,
    thresholds_for_run,
)
from streamvae.tracking.store import (
    FAILURE_TAG,
    MlflowCallback,
    configure,
    ensure_experiment,
    flatten,
    log_bundle,
    log_report,
    log_run_metrics,
    set_alias,
    tracked_run,
    tracking_uri,
)

__all__ = [
    "FAILURE_TAG",
    "MlflowCallback",
    "ResolvedModel",
    "VersionListing",
    "alias_version",
    "configure",
    "ensure_experiment",
    "flatten",
    "list_versions",
    "load_resolved",
    "log_bundle",
    "log_report",
    "log_run_metrics",
    "record_for_version",
    "record_thresholds",
    "resolve",
    "set_alias",
    "thresholds_for_run",
    "tracked_run",
    "tracking_uri",
]
