"""``python -m streamvae`` runs the CLI."""

from __future__ import annotations

from streamvae.cli import main

main()
