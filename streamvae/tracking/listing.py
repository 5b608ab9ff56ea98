"""The registry as ``streamvae models`` lists it: MLflow only, no torch (answers in seconds)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from streamvae.errors import ModelLoadError
from streamvae.tracking.store import THRESHOLD_TAG


@dataclass(frozen=True, slots=True)
class VersionListing:
    """One registered model version as ``streamvae models`` lists it."""

    name: str
    version: str
    aliases: tuple[str, ...]
    created_at: str
    run_id: str | None
    threshold: float | None
    score_kind: str | None
    calibrated_at: str | None

    def to_dict(self) -> dict[str, object]:
        """Plain values (JSON-ready)."""
        return {
            "name": self.name, "version": self.version, "aliases": list(self.aliases),
            "created_at": self.created_at, "run_id": self.run_id, "threshold": self.threshold,
            "score_kind": self.score_kind, "calibrated_at": self.calibrated_at,
        }  # fmt: skip


def list_versions(name: str | None = None) -> list[VersionListing]:
    """Every registered version (of ``name``, or of every model), newest first per model.

    The threshold, score kind and calibration time come from the summary ``calibrate`` (or
    training) tags each version with; a version never calibrated shows ``None``.

    Raises:
        ModelLoadError: the registry is unreachable, or ``name`` is not registered.
    """
    client = MlflowClient()
    try:
        names = [name] if name else sorted(m.name for m in client.search_registered_models())
        out = []
        for model in names:
            aliases: dict[str, list[str]] = {}
            for alias, version in client.get_registered_model(model).aliases.items():
                aliases.setdefault(str(version), []).append(alias)
            versions = client.search_model_versions(f"name = '{model}'")
            for mv in sorted(versions, key=lambda v: -int(v.version)):
                summary = json.loads((mv.tags or {}).get(THRESHOLD_TAG, "{}"))
                created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC)
                listing = VersionListing(
                    mv.name, str(mv.version), tuple(sorted(aliases.get(str(mv.version), []))),
                    created.isoformat(timespec="seconds"), mv.run_id, summary.get("value"),
                    summary.get("score_kind"), summary.get("created_at"),
                )  # fmt: skip
                out.append(listing)
    except MlflowException as exc:
        msg = f"cannot list the registry: {exc.message}"
        raise ModelLoadError(msg) from exc
    return out
