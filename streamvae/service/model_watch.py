"""Live model swap: follow a registry alias and prepare validated replacements in the background.

A daemon thread asks the registry every ``interval_s`` which version the alias points at
(one cheap call). When it moves, the thread downloads the version, loads it with its
calibrated thresholds, checks it takes the same input as the model being served
(``check_replacement``) and scores a probe input (``probe``). A candidate that passes waits
in a slot; the scoring loop takes it between two batches (``take``), so no batch is scored
by two models and the loop never waits for a download. A candidate that fails is refused,
counted and logged once per version; the old model keeps serving. Registry or download
errors, and any unexpected error, are counted (``model_reloads_total{result="failed"}``) and
retried at the next poll: the thread never dies. Candidates are loaded with the served
model's ``strict`` version check.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streamvae.bundle import Detector, ModelBundle, check_replacement, probe
from streamvae.errors import ModelLoadError, StreamVAEError, VersionMismatchError
from streamvae.metrics import ServiceMetrics
from streamvae.tracking import alias_version, load_resolved, resolve
from streamvae.types import ModelRef

logger = logging.getLogger(__name__)

Role = Literal["champion", "shadow"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A validated model ready to be installed."""

    role: Role
    ref: ModelRef
    bundle: ModelBundle
    detector: Detector


class ModelWatcher:
    """Follows ``uri`` (``models:/NAME@ALIAS``) and prepares validated candidates.

    Args:
        uri: the alias URI being served.
        role: ``champion`` (replaces the served model) or ``shadow`` (scored alongside).
        served_version: the version loaded now (no swap until the alias leaves it).
        reference: the bundle whose input contract candidates must keep.
        workdir: where versions are downloaded (each removed once loaded).
        metrics: ``model_reloads_total{result}`` is counted here.
        interval_s: seconds between registry polls.
        device: where candidates are built and probed.
        strict: refuse a version saved by another streamvae/torch/python (``strict_versions``).
    """

    def __init__(
        self,
        uri: str,
        *,
        role: Role,
        served_version: str | None,
        reference: ModelBundle,
        workdir: Path,
        metrics: ServiceMetrics,
        interval_s: float,
        device: str = "cpu",
        strict: bool = False,
    ) -> None:
        self.uri, self.role, self.reference = uri, role, reference
        self.workdir, self.metrics = workdir, metrics
        self.interval_s, self.device, self.strict = interval_s, device, strict
        self.seen_version = served_version  # installed or waiting in the slot
        self.refused_version: str | None = None
        self._slot: Candidate | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"model-watch-{role}", daemon=True)
        self._downloads = 0
        self._loaded_fixed = served_version is not None

    def start(self) -> ModelWatcher:
        """Start polling in a daemon thread."""
        self._thread.start()
        logger.info(
            "watching %s for new versions every %.0f s (role=%s)", self.uri, self.interval_s,
            self.role,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        """Stop polling (waits for a download in progress)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def take(self) -> Candidate | None:
        """The candidate waiting to be installed, once (non-blocking)."""
        with self._lock:
            candidate, self._slot = self._slot, None
        return candidate

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check_once()

    def check_once(self) -> Candidate | None:
        """Poll the alias once; prepare a candidate when it moved. Never raises."""
        try:
            return self._check()
        except Exception as exc:  # a bug or an unexpected library error: retry next poll
            self._count("failed")
            logger.error("model watch: unexpected error, retried at the next poll: %r", exc)  # noqa: TRY400
            return None

    def _check(self) -> Candidate | None:
        try:
            version = alias_version(self.uri)
        except ModelLoadError as exc:
            self._count("failed")
            logger.warning("model watch: %s", exc)
            return None
        if version is None:  # not an alias (a version, a run, a local bundle): load it once
            if self._loaded_fixed:
                return None
            self._loaded_fixed = True
        elif version in (self.seen_version, self.refused_version):
            return None
        self._downloads += 1
        dst = self.workdir / f"{self.role}-{version or 'fixed'}-{self._downloads}"
        try:
            resolved = resolve(self.uri, dst)
            bundle = load_resolved(resolved, strict=self.strict)
        except VersionMismatchError as exc:
            self._refuse(version or "fixed", exc)
            return None
        except StreamVAEError as exc:
            self._count("failed")
            logger.warning("model watch: cannot load %s version %s: %s", self.uri, version, exc)
            return None
        finally:
            shutil.rmtree(dst, ignore_errors=True)  # everything is in memory once loaded
        ref = resolved.ref
        try:
            check_replacement(self.reference, bundle)
            detector = probe(bundle, device=self.device)
        except Exception as exc:
            self._refuse(ref.version, exc)
            return None
        candidate = Candidate(self.role, ref, bundle, detector)
        with self._lock:
            self._slot = candidate  # a newer candidate replaces one not yet taken
        self.seen_version = ref.version
        logger.info("model watch: %s version %s validated, swapping", self.uri, ref.version)
        return candidate

    def _refuse(self, version: str, exc: Exception) -> None:
        self.refused_version = version
        self._count("refused")
        logger.error(
            "model watch: refused %s version %s, version %s keeps serving: %s",
            self.uri, version, self.seen_version, exc,
        )  # fmt: skip

    def _count(self, result: str) -> None:
        self.metrics.model_reloads.labels(result=result).inc()
