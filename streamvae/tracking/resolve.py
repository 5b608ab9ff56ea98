"""Resolve a model URI to a local bundle, and bind calibrated thresholds to model versions.

Accepted URIs: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``runs:/RUN_ID`` and a local
bundle directory. Thresholds calibrated for a registered version are logged under its run and
pointed at by a tag *on that version*, so ``models:/NAME@champion`` always yields the
(model, thresholds) pair that was calibrated together; moving the alias moves both.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from streamvae.errors import ModelLoadError
from streamvae.thresholds import ThresholdSet
from streamvae.tracking.store import (
    BUNDLE_ARTIFACT,
    CALIBRATION_TAG,
    THRESHOLD_TAG,
    check_uri,
    set_model_signature,
)
from streamvae.types import ModelRef

if TYPE_CHECKING:  # pragma: no cover
    from streamvae.bundle import ModelBundle

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


def alias_version(uri: str) -> str | None:
    """The version a ``models:/NAME@ALIAS`` URI points at now (``None`` for other URIs).

    One registry call, no download: cheap enough to poll.

    Raises:
        ModelLoadError: the registry is unreachable or the alias does not exist.
    """
    if not uri.startswith("models:/") or "@" not in uri:
        return None
    name, alias = uri.removeprefix("models:/").split("@", 1)
    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        msg = f"cannot look up {uri!r} in the MLflow registry: {exc.message}"
        raise ModelLoadError(msg) from exc


def resolve(uri: str, dst: Path) -> ResolvedModel:
    """Download (if remote) and locate the bundle behind ``uri``.

    Raises:
        ConfigError: malformed URI.
        ModelLoadError: unknown model, version, alias or run.
    """
    check_uri(uri)
    if uri.startswith(("models:/", "runs:/")):
        dst.mkdir(parents=True, exist_ok=True)  # MLflow lays a missing dst out differently
    if uri.startswith("models:/"):
        return _registry(uri, dst)
    if uri.startswith("runs:/"):
        return _run(uri, dst)
    root = _bundle_in(Path(uri))
    ref = ModelRef(name=root.resolve().name, version="local", uri=uri)
    return ResolvedModel(uri, "local", root, ref)


def _calibration_path(client: MlflowClient, resolved: ResolvedModel) -> str | None:
    if resolved.kind == "registry":
        mv = client.get_model_version(resolved.ref.name, resolved.ref.version)
        return mv.tags.get(CALIBRATION_TAG)
    if resolved.kind == "run" and resolved.run_id is not None:
        return client.get_run(resolved.run_id).data.tags.get(CALIBRATION_TAG)
    return None


def _download_thresholds(run_id: str, path: str, what: str) -> ThresholdSet:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{path}", dst_path=tmp)
        except MlflowException as exc:
            msg = f"cannot download the calibration {path!r} of {what}: {exc.message}"
            raise ModelLoadError(msg) from exc
        from streamvae.bundle import read_thresholds  # torch loads with the bundle code

        return read_thresholds(Path(local))


def thresholds_for_run(run_id: str) -> ThresholdSet | None:
    """The thresholds ``calibrate`` recorded for the model logged by run ``run_id``.

    For a model loaded without its registry URI (MLflow's pyfunc loader passes only the
    model's files): the registered version(s) logged by that run are looked up, and the
    calibration recorded on the newest calibrated one applies; failing that, one recorded
    on the run itself. ``None`` when neither was ever calibrated after training.

    Raises:
        ModelLoadError: the registry is unreachable, or the calibration cannot be read.
    """
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"run_id = '{run_id}'")
        tagged = [mv for mv in versions if CALIBRATION_TAG in (mv.tags or {})]
        path: str | None
        if tagged:
            newest = max(tagged, key=lambda mv: int(mv.version))
            path, what = newest.tags[CALIBRATION_TAG], f"{newest.name} v{newest.version}"
        else:
            path, what = client.get_run(run_id).data.tags.get(CALIBRATION_TAG), f"run {run_id}"
    except MlflowException as exc:
        msg = f"cannot look up the calibration of run {run_id!r}: {exc.message}"
        raise ModelLoadError(msg) from exc
    return None if path is None else _download_thresholds(run_id, path, what)


def _stored_thresholds(resolved: ResolvedModel) -> ThresholdSet | None:
    if resolved.kind == "local":
        return None  # no registry involved: never open (or create) a tracking store
    path = _calibration_path(MlflowClient(), resolved)
    if path is None or resolved.run_id is None:
        return None
    return _download_thresholds(resolved.run_id, path, repr(resolved.uri))


def load_resolved(resolved: ResolvedModel, *, strict: bool = False) -> ModelBundle:
    """Load the bundle with the thresholds calibrated for this exact model version.

    Thresholds recorded on the registry version (or run) by ``calibrate`` take precedence
    over the ``threshold.json`` written at training time.

    Raises:
        ModelLoadError: unreadable bundle, or thresholds bound to another version.
    """
    from streamvae.bundle import load_bundle

    bundle = load_bundle(resolved.bundle_dir, strict=strict)
    thresholds = _stored_thresholds(resolved)
    if thresholds is None:
        return bundle
    bound = thresholds.default.model_name, thresholds.default.model_version
    if resolved.kind == "registry" and bound != (resolved.ref.name, resolved.ref.version):
        msg = f"threshold on {resolved.uri!r} was calibrated for {bound}, not this version"
        raise ModelLoadError(msg)
    try:
        return bundle.with_threshold(thresholds)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc


def _summary(thresholds: ThresholdSet) -> str:
    """A short JSON for people reading the registry (the full record is the artifact)."""
    d = thresholds.default
    fields = (
        "value", "method", "target_fpr", "percentile", "n_calibration", "created_at", "score_kind",
    )  # fmt: skip
    summary = {f: getattr(d, f) for f in fields} | {"segments": len(thresholds.segments)}
    return json.dumps(summary, sort_keys=True)


def record_for_version(
    name: str, version: str, run_id: str, thresholds: ThresholdSet
) -> ThresholdSet:
    """Store ``thresholds`` with registered version ``name/version`` (logged under its run).

    The set (JSON and calibration scores) is logged as run artifacts under
    ``calibrations/``; the version's tags point at it and summarise it.
    """
    bound = thresholds.for_model(name, version)
    client = MlflowClient()
    path = _log_calibration(client, run_id, bound, f"v{version}")
    client.set_model_version_tag(name, version, CALIBRATION_TAG, path)
    client.set_model_version_tag(name, version, THRESHOLD_TAG, _summary(bound))
    return bound


def _log_calibration(
    client: MlflowClient, run_id: str, thresholds: ThresholdSet, label: str
) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = f"calibrations/{label}-{stamp}"
    with tempfile.TemporaryDirectory() as tmp:
        from streamvae.bundle import write_thresholds

        write_thresholds(Path(tmp), thresholds)
        client.log_artifacts(run_id, tmp, artifact_path=path)
    return path


def record_thresholds(resolved: ResolvedModel, thresholds: ThresholdSet) -> ThresholdSet:
    """Store ``thresholds`` with the model they were calibrated on; returns them as bound.

    Registry versions and runs get the calibration as run artifacts plus tags pointing at
    it; local bundles get new ``threshold.json`` and calibration-score files.
    """
    if resolved.kind == "registry" and resolved.run_id is not None:
        bound = record_for_version(
            resolved.ref.name, resolved.ref.version, resolved.run_id, thresholds
        )
        if bound.segment_field is not None:
            _admit_segment_field(resolved.ref.name, resolved.ref.version, bound.segment_field)
    elif resolved.kind == "run" and resolved.run_id is not None:
        bound = thresholds.for_model(resolved.ref.name, resolved.ref.version)
        client = MlflowClient()
        path = _log_calibration(client, resolved.run_id, bound, "run")
        client.set_tag(resolved.run_id, CALIBRATION_TAG, path)
        client.set_tag(resolved.run_id, THRESHOLD_TAG, _summary(bound))
    else:
        bound = thresholds.for_model(resolved.ref.name, resolved.ref.version)
        from streamvae.bundle import write_thresholds

        write_thresholds(resolved.bundle_dir, bound)
    logger.info("thresholds recorded model=%s value=%s", resolved.uri, bound.default.value)
    return bound


def _admit_segment_field(name: str, version: str, segment_field: str) -> None:
    """Add the segment field to the version's input signature (MLflow drops unnamed columns).

    Without it the pyfunc would never see the field and apply the default threshold to
    every row, unlike the service and ``streamvae score``.
    """
    from mlflow.models import get_model_info
    from mlflow.types import ColSpec, Schema

    source = MlflowClient().get_model_version(name, version).source
    if not source:
        return
    signature = get_model_info(source).signature
    if signature is None or signature.inputs is None:
        return  # no signature: nothing is enforced, nothing dropped
    columns = signature.inputs.inputs
    if any(getattr(col, "name", None) == segment_field for col in columns):
        return
    extra = ColSpec("string", segment_field, required=False)
    signature.inputs = Schema([*columns, extra])
    set_model_signature(source, signature)
