"""Resolve a model URI to a local bundle, and bind calibrated thresholds to model versions.

Accepted URIs: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN_ID`` and a local
bundle directory. A threshold calibrated for a registered version is stored as a tag *on
that version*, so ``models:/NAME@champion`` always yields the (model, threshold) pair that
was calibrated together; moving the alias moves both.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from streamvae.bundle import ModelBundle, load_bundle
from streamvae.bundle.io import THRESHOLD
from streamvae.errors import ModelLoadError
from streamvae.thresholds import Threshold
from streamvae.tracking.store import BUNDLE_ARTIFACT, THRESHOLD_TAG, check_uri, threshold_tag_value
from streamvae.types import ModelRef

logger = logging.getLogger(__name__)

SourceKind = Literal["registry", "run", "local"]


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model URI resolved to a bundle directory on this machine."""

    uri: str
    kind: SourceKind
    bundle_dir: Path
    ref: ModelRef
    run_id: str | None = None


def _bundle_in(root: Path) -> Path:
    """The bundle directory inside a downloaded MLflow model (or ``root`` itself)."""
    nested = root / "artifacts" / BUNDLE_ARTIFACT
    return nested if nested.is_dir() else root


def _registry(uri: str, dst: Path) -> ResolvedModel:
    rest = uri.removeprefix("models:/")
    client = MlflowClient()
    try:
        if "@" in rest:
            name, alias = rest.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, version = rest.rsplit("/", 1)
            alias = None
            mv = client.get_model_version(name, version)
        local = mlflow.artifacts.download_artifacts(
            f"models:/{name}/{mv.version}", dst_path=str(dst)
        )
    except MlflowException as exc:
        msg = f"cannot resolve {uri!r} in the MLflow registry: {exc.message}"
        raise ModelLoadError(msg) from exc
    ref = ModelRef(name=name, version=str(mv.version), alias=alias, uri=uri)
    return ResolvedModel(uri, "registry", _bundle_in(Path(local)), ref, mv.run_id)


def _run(uri: str, dst: Path) -> ResolvedModel:
    parts = uri.removeprefix("runs:/").strip("/").split("/")
    run_id = parts[0]
    path = "/".join(parts[1:]) or "model"
    try:
        local = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{path}", dst_path=str(dst))
    except MlflowException as exc:
        msg = f"cannot resolve {uri!r}: {exc.message}"
        raise ModelLoadError(msg) from exc
    ref = ModelRef(name=f"run-{run_id[:8]}", version=run_id, uri=uri)
    return ResolvedModel(uri, "run", _bundle_in(Path(local)), ref, run_id)


def resolve(uri: str, dst: Path) -> ResolvedModel:
    """Download (if remote) and locate the bundle behind ``uri``.

    Raises:
        ConfigError: malformed URI.
        ModelLoadError: unknown model, version, alias or run.
    """
    check_uri(uri)
    if uri.startswith("models:/"):
        return _registry(uri, dst)
    if uri.startswith("runs:/"):
        return _run(uri, dst)
    root = _bundle_in(Path(uri))
    ref = ModelRef(name=root.resolve().name, version="local", uri=uri)
    return ResolvedModel(uri, "local", root, ref)


def _stored_threshold(resolved: ResolvedModel) -> Threshold | None:
    client = MlflowClient()
    raw: str | None = None
    if resolved.kind == "registry":
        mv = client.get_model_version(resolved.ref.name, resolved.ref.version)
        raw = mv.tags.get(THRESHOLD_TAG)
    elif resolved.kind == "run" and resolved.run_id is not None:
        raw = client.get_run(resolved.run_id).data.tags.get(THRESHOLD_TAG)
    if raw is None:
        return None
    return Threshold.from_dict(json.loads(raw))


def load_resolved(resolved: ResolvedModel, *, strict: bool = False) -> ModelBundle:
    """Load the bundle with the threshold calibrated for this exact model version.

    A threshold recorded on the registry version (or run) takes precedence over the
    ``threshold.json`` written at training time.

    Raises:
        ModelLoadError: unreadable bundle, or a threshold bound to another version.
    """
    bundle = load_bundle(resolved.bundle_dir, strict=strict)
    threshold = _stored_threshold(resolved) if resolved.kind != "local" else None
    if threshold is None:
        return bundle
    bound = threshold.model_name, threshold.model_version
    if resolved.kind == "registry" and bound != (resolved.ref.name, resolved.ref.version):
        msg = f"threshold on {resolved.uri!r} was calibrated for {bound}, not this version"
        raise ModelLoadError(msg)
    try:
        return bundle.with_threshold(threshold)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc


def bind_threshold(name: str, version: str, threshold: Threshold) -> Threshold:
    """Tag registered version ``name/version`` with ``threshold``; returns it as bound."""
    bound = threshold.for_model(name, version)
    value = threshold_tag_value(bound.to_dict())
    MlflowClient().set_model_version_tag(name, version, THRESHOLD_TAG, value)
    return bound


def record_threshold(resolved: ResolvedModel, threshold: Threshold) -> Threshold:
    """Store ``threshold`` with the model it was calibrated on; returns it as bound.

    Registry versions get a version tag, runs a run tag, local bundles a new
    ``threshold.json``.
    """
    if resolved.kind == "registry":
        return bind_threshold(resolved.ref.name, resolved.ref.version, threshold)
    bound = threshold.for_model(resolved.ref.name, resolved.ref.version)
    if resolved.kind == "run" and resolved.run_id is not None:
        MlflowClient().set_tag(resolved.run_id, THRESHOLD_TAG, threshold_tag_value(bound.to_dict()))
    else:
        path = resolved.bundle_dir / THRESHOLD
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(bound.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        tmp.replace(path)
    logger.info("threshold recorded model=%s value=%s", resolved.uri, bound.value)
    return bound
