"""The ``streamvae`` command line, one module per domain (each registers its commands)."""

from __future__ import annotations

from streamvae.cli import (  # noqa: F401 (each registers its commands)
    bench,
    calibration,
    demo,
    evaluate,
    scoring,
    serving,
    train,
)
from streamvae.cli.common import app


def main() -> None:
    """Console-script entry point."""
    app()


__all__ = ["app", "main"]
