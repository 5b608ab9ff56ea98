"""The model bundle: a plain directory, no pickles (``weights_only=True``)."""

from __future__ import annotations

import json
import logging
import pickle
import platform
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamvae._version import __version__
from streamvae.bundle.kinds import INPUT_KINDS, Preprocess, input_kind, read_preprocess
from streamvae.errors import ModelLoadError, VersionMismatchError
from streamvae.models import MODEL_REGISTRY, config_from_dict
from streamvae.scoring.fusion import ScoreFusion
from streamvae.thresholds import ThresholdSet
from streamvae.types import NEIGHBOUR_SCORE_KINDS, ScoreKind

logger = logging.getLogger(__name__)

BUNDLE_SCHEMA_VERSION = 1
WEIGHTS, CONFIG, PREPROCESS, THRESHOLD, META = (
    "weights.pt",
    "config.json",
    "preprocess.json",
    "threshold.json",
    "meta.json",
)
REFERENCE = "calibration_scores.npz"
NEIGHBOURS = "neighbours.npy"  # the fused score's indexed rows (scaled), float32
# a bundle holds these and nothing else: anything more (a pickle, code) is refused at load
BUNDLE_FILES = frozenset({WEIGHTS, CONFIG, PREPROCESS, THRESHOLD, META, REFERENCE, NEIGHBOURS})


@dataclass(frozen=True, slots=True)
class ModelBundle:
    """Everything the service needs to score: model, preprocessing, score kind, threshold.

    Attributes:
        model_key: registry key of the model family.
        model_config: the family's config as plain values (``dataclasses.asdict``).
        state_dict: the trained weights.
        preprocess: the input contract of its kind (``streamvae.bundle.kinds``): feature
            schema and scaler (tabular), window spec and per-series scaling (KPI windows),
            image shape (images).
        score_kind: the score the threshold applies to.
        threshold: the calibrated thresholds, or ``None`` before calibration.
        meta: provenance (versions, training summary).
        is_samples: importance samples K of the ``is_nll`` and ``bpd`` scores.
        fusion: the neighbour index and tails of the ``neighbour`` and ``fused`` scores
            (tabular models trained with them), or ``None``.
    """

    model_key: str
    model_config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    preprocess: Preprocess
    score_kind: ScoreKind = "neg_elbo"
    threshold: ThresholdSet | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    is_samples: int = 64
    fusion: ScoreFusion | None = None

    def __post_init__(self) -> None:
        if self.score_kind in NEIGHBOUR_SCORE_KINDS and self.fusion is None:
            msg = f"score_kind {self.score_kind!r} needs the model's neighbour index"
            raise ValueError(msg)

    def with_threshold(self, threshold: ThresholdSet) -> ModelBundle:
        """The same bundle with ``threshold`` in force.

        Raises:
            ValueError: the threshold was calibrated for another score kind.
        """
        if threshold.score_kind != self.score_kind:
            msg = (
                f"threshold is for score {threshold.score_kind!r} but the model scores "
                f"{self.score_kind!r}"
            )
            raise ValueError(msg)
        return replace(self, threshold=threshold)


def runtime_versions() -> dict[str, str]:
    """Versions recorded in ``meta.json`` and compared at load time."""
    return {
        "streamvae_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }


def _write_json(path: Path, values: dict[str, Any]) -> None:
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def save_bundle(bundle: ModelBundle, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``bundle`` as a directory, atomically (a temporary sibling renamed into place).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        msg = f"bundle directory {str(target)!r} already exists"
        raise FileExistsError(msg)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=target.parent))
    try:
        cpu_state = {k: v.detach().cpu() for k, v in bundle.state_dict.items()}
        torch.save(cpu_state, tmp / WEIGHTS)
        config = {"model": bundle.model_key, "config": bundle.model_config}
        scoring: dict[str, Any] = {"score_kind": bundle.score_kind, "is_samples": bundle.is_samples}
        if bundle.fusion is not None:
            scoring["fusion"] = bundle.fusion.to_dict()
            np.save(tmp / NEIGHBOURS, bundle.fusion.index.rows, allow_pickle=False)
        _write_json(tmp / CONFIG, config | scoring)
        _write_json(tmp / PREPROCESS, bundle.preprocess.to_dict())
        if bundle.threshold is not None:
            write_thresholds(tmp, bundle.threshold)
        meta = {"schema_version": BUNDLE_SCHEMA_VERSION} | runtime_versions() | bundle.meta
        if bundle.preprocess.KIND != "image":  # images: the shape says it
            meta["feature_names"] = list(bundle.preprocess.feature_names)
        _write_json(tmp / META, meta)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def write_thresholds(directory: Path, thresholds: ThresholdSet) -> None:
    """Write ``threshold.json`` and the calibration scores (``.npz``, no pickle) there."""
    _write_json(directory / THRESHOLD, thresholds.to_dict())
    keys = list(thresholds.reference)
    arrays: dict[str, Any] = {"keys": np.asarray(keys, dtype=np.str_)}
    for i, key in enumerate(keys):
        arrays[f"r{i}"] = np.asarray(thresholds.reference[key], dtype=np.float64)
    np.savez(directory / REFERENCE, **arrays)


def read_thresholds(directory: Path) -> ThresholdSet:
    """Inverse of :func:`write_thresholds` (the scores file is optional).

    Raises:
        ModelLoadError: unreadable or invalid files.
    """
    values = _read_json(directory / THRESHOLD)
    reference: dict[str, np.ndarray] = {}
    if (directory / REFERENCE).is_file():
        try:
            with np.load(directory / REFERENCE, allow_pickle=False) as npz:
                keys = [str(k) for k in npz["keys"]]
                reference = {k: np.sort(npz[f"r{i}"]) for i, k in enumerate(keys)}
        except (OSError, ValueError, KeyError) as exc:
            msg = f"cannot read calibration scores in {str(directory)!r}: {exc}"
            raise ModelLoadError(msg) from exc
    try:
        return ThresholdSet.from_dict(values, reference)
    except (KeyError, ValueError, TypeError) as exc:
        msg = f"invalid thresholds in {str(directory)!r}: {exc}"
        raise ModelLoadError(msg) from exc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"model bundle is missing {path.name} (looked in {str(path.parent)!r})"
        raise ModelLoadError(msg) from None
    except json.JSONDecodeError as exc:
        msg = f"{str(path)!r} is not valid JSON: {exc}"
        raise ModelLoadError(msg) from exc
    if not isinstance(values, dict):
        msg = f"{str(path)!r} must hold a JSON object"
        raise ModelLoadError(msg)
    return values


def _check_versions(meta: dict[str, Any], strict: bool) -> None:
    if meta.get("schema_version") != BUNDLE_SCHEMA_VERSION:
        msg = (
            f"bundle schema_version {meta.get('schema_version')!r} is not supported "
            f"(this streamvae reads {BUNDLE_SCHEMA_VERSION})"
        )
        raise ModelLoadError(msg)
    for key, now in runtime_versions().items():
        then = meta.get(key)
        if then != now:
            msg = f"bundle was saved with {key}={then!r}, running {now!r}"
            if strict:
                raise VersionMismatchError(msg)
            logger.warning("%s", msg)


def load_bundle(path: str | Path, *, strict: bool = False) -> ModelBundle:
    """Read a bundle directory written by :func:`save_bundle`.

    Args:
        path: the bundle directory.
        strict: turn a streamvae/torch/python version drift into an error (else a warning).

    Raises:
        ModelLoadError: missing or invalid files, unknown model family, version drift
            under ``strict``.
    """
    root = Path(path)
    if not root.is_dir():
        msg = f"model bundle directory {str(root)!r} does not exist"
        raise ModelLoadError(msg)
    unknown = sorted(p.name for p in root.iterdir() if p.name not in BUNDLE_FILES)
    if unknown:
        msg = f"model bundle {str(root)!r} holds unexpected file(s) {unknown[:5]}: refused"
        raise ModelLoadError(msg)
    meta = _read_json(root / META)
    _check_versions(meta, strict)
    config = _read_json(root / CONFIG)
    try:
        key = config["model"]
        if key not in MODEL_REGISTRY:
            msg = f"bundle uses unknown model {key!r}; known: {sorted(MODEL_REGISTRY)}"
            raise ModelLoadError(msg)
        config_from_dict(key, config["config"])  # validates before any weights are read
        preprocess = read_preprocess(_read_json(root / PREPROCESS))
        score_kind = config.get("score_kind", "neg_elbo")
        kinds = input_kind(preprocess).score_kinds
        if score_kind not in kinds:
            msg = f"bundle score_kind {score_kind!r} is not one of {kinds}"
            raise ModelLoadError(msg)
        is_samples = int(config.get("is_samples", 64))
        if is_samples < 1:
            msg = f"bundle is_samples must be >= 1, got {is_samples}"
            raise ModelLoadError(msg)
        threshold = read_thresholds(root) if (root / THRESHOLD).is_file() else None
        fusion = _read_fusion(root, config, preprocess)
        state = torch.load(root / WEIGHTS, map_location="cpu", weights_only=True)
    except (KeyError, ValueError, TypeError) as exc:
        msg = f"invalid model bundle {str(root)!r}: {exc}"
        raise ModelLoadError(msg) from exc
    # torch raises these for unreadable weights; UnpicklingError for anything beyond tensors
    except (OSError, RuntimeError, pickle.UnpicklingError) as exc:
        msg = f"cannot read weights of bundle {str(root)!r}: {exc}"
        raise ModelLoadError(msg) from exc
    try:
        return ModelBundle(
            key,
            config["config"],
            state,
            preprocess,
            score_kind,
            threshold,
            meta,
            is_samples,
            fusion,
        )
    except ValueError as exc:
        msg = f"invalid model bundle {str(root)!r}: {exc}"
        raise ModelLoadError(msg) from exc


def _read_fusion(root: Path, config: dict[str, Any], preprocess: Preprocess) -> ScoreFusion | None:
    """The neighbour index and tails, when the bundle has them (``ValueError`` if broken)."""
    if "fusion" not in config:
        return None
    kind = input_kind(preprocess)
    if kind.neighbour_dim is None:
        allowed = sorted(k for k, v in INPUT_KINDS.items() if v.neighbour_dim is not None)
        msg = f"only {' and '.join(allowed)} models carry a neighbour index"
        raise ValueError(msg)
    if "complexity_tail" in config["fusion"] and not kind.complexity:
        msg = f"a complexity tail is for images; this is a {kind.name} model"
        raise ValueError(msg)
    if config["fusion"].get("views") and kind.complexity:
        msg = f"neighbour views are for feature rows; this is a {kind.name} model"
        raise ValueError(msg)
    dim = kind.neighbour_dim(preprocess)
    try:
        rows = np.load(root / NEIGHBOURS, allow_pickle=False)
    except OSError as exc:
        msg = f"cannot read {NEIGHBOURS}: {exc}"
        raise ValueError(msg) from exc
    if rows.dtype != np.float32 or rows.ndim != 2 or rows.shape[1] != dim:
        want = f"float32 (m, {dim})"
        msg = f"{NEIGHBOURS} must be {want}, got {rows.dtype} {rows.shape}"
        raise ValueError(msg)
    return ScoreFusion.from_parts(config["fusion"], rows, chunk_size=kind.neighbour_chunk)
