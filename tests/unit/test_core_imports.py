from __future__ import annotations

import subprocess
import sys

CORE = ("models", "scoring", "thresholds", "training", "data", "bundle")
SERVICE_LIBS = ("kafka", "mlflow", "prometheus_client", "typer", "pydantic_settings")


def test_core_does_not_import_service_libraries():
    code = "\n".join(
        [
            "import importlib, sys",
            *(f"importlib.import_module('streamvae.{m}')" for m in CORE),
            f"print(','.join(m for m in {SERVICE_LIBS!r} if m in sys.modules))",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def _loaded(modules: tuple[str, ...], heavy: tuple[str, ...]) -> list[str]:
    code = "\n".join(
        [
            "import importlib, sys",
            *(f"importlib.import_module({m!r})" for m in modules),
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_the_cli_and_the_registry_load_without_torch():
    """What keeps --help, argument errors and `streamvae models` fast (seconds, not more)."""
    assert _loaded(("streamvae", "streamvae.cli"), ("torch", "mlflow", "scipy")) == []
    assert _loaded(("streamvae.tracking",), ("torch",)) == []
