"""Anomaly-map files of image alerts: bounded retention, and a full disk that never crashes."""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


class MapStore:
    """Saves each alert's map as ``.npy`` under ``directory``, keeping the newest ``max_files``.

    Files already there when the service starts count towards the limit (oldest first by
    modification time). A write that fails (disk full, permissions) disables saving for the
    rest of the run with one error line; alerts are still sent, without ``map_path``.
    """

    def __init__(self, directory: str | Path, max_files: int) -> None:
        if max_files < 1:
            msg = f"max_files must be >= 1, got {max_files}"
            raise ValueError(msg)
        self.directory = Path(directory)
        self.max_files = max_files
        self.disabled = False
        self._files: deque[Path] | None = None

    def save(self, name: str, anomaly_map: np.ndarray) -> str | None:
        """Write ``anomaly_map`` as ``name`` (a file name); its path, or ``None`` when disabled.

        A failed write returns ``None`` and sets ``disabled``: a caller that checked
        ``disabled`` before the call counts it as the one failure.
        """
        if self.disabled:
            return None
        try:
            files = self._existing()
            path = self.directory / name
            np.save(path, anomaly_map.astype(np.float32), allow_pickle=False)
            files.append(path)
            while len(files) > self.max_files:
                files.popleft().unlink(missing_ok=True)
        except OSError as exc:
            self.disabled = True
            logger.error(  # noqa: TRY400 - an outcome to report, not a crash to trace
                "cannot save anomaly maps under %s (%s); map files are off until restart, "
                "alerts are still sent", self.directory, exc,
            )  # fmt: skip
            return None
        return str(path)

    def _existing(self) -> deque[Path]:
        if self._files is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            found = sorted(self.directory.glob("*.npy"), key=lambda p: p.stat().st_mtime)
            self._files = deque(found)
        return self._files
