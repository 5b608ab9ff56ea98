"""The only mlflow code: tracking store, runs, model logging, registry and thresholds."""

from __future__ import annotations

from streamvae.tracking.listing import VersionListing, list_versions
from streamvae.tracking.resolve import (
    ResolvedModel,
    alias_version,
    load_resolved,
    record_for_version,
    record_thresholds,
    resolve,
    thresholds_for_run,
)
from streamvae.tracking.store import (
    FAILURE_TAG,
    REPORT_ARTIFACT,
    MlflowCallback,
    configure,
    ensure_experiment,
    feature_signature,
    flatten,
    log_bundle,
    log_report,
    log_run_metrics,
    point_signature,
    publish_report,
    set_alias,
    set_model_signature,
    tracked_run,
    tracking_uri,
)
from streamvae.tracking.training_run import Trained, TrainOutcome, train_in_run

__all__ = [
    "FAILURE_TAG",
    "REPORT_ARTIFACT",
    "MlflowCallback",
    "ResolvedModel",
    "TrainOutcome",
    "Trained",
    "VersionListing",
    "alias_version",
    "configure",
    "ensure_experiment",
    "feature_signature",
    "flatten",
    "list_versions",
    "load_resolved",
    "log_bundle",
    "log_report",
    "log_run_metrics",
    "point_signature",
    "publish_report",
    "record_for_version",
    "record_thresholds",
    "resolve",
    "set_alias",
    "set_model_signature",
    "thresholds_for_run",
    "tracked_run",
    "tracking_uri",
    "train_in_run",
]
