"""The ``streamvae`` command line: train, calibrate, thresholds, evaluate, promote, serve, demo."""

from __future__ import annotations

from streamvae.cli import calibration, commands, scoring  # noqa: F401 (registers the commands)
from streamvae.cli.common import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
