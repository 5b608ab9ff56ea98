"""Shared fixtures: the embedded broker, a local MLflow store, the shared data sets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import factories

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"


def need(condition: bool, reason: str) -> None:
    """Skip when a component is missing; under CI=true a missing component fails instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def adbench_dir() -> Path:
    path = SHARED_DATA / "adbench"
    need(path.is_dir(), f"ADBench data not found at {path}")
    return path


@pytest.fixture(scope="session")
def mnist_dev() -> Path:
    path = SHARED_DATA / "mnist" / "mnist_t10k_dev.npz"
    need(path.is_file(), f"MNIST development images not found at {path}")
    return path


@pytest.fixture(scope="session")
def nab_dir() -> Path:
    path = SHARED_DATA / "nab"
    need(path.is_dir(), f"NAB data not found at {path}")
    return path


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """Bootstrap servers of one embedded Tansu broker for the whole session."""
    from streamvae.errors import BrokerError
    from streamvae.stream.embedded import EmbeddedBroker, broker_binary

    try:
        broker_binary()
    except BrokerError as exc:
        need(False, str(exc))
    with EmbeddedBroker() as running:
        yield running.bootstrap_servers


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh local MLflow store (SQLite + local artifacts) for one test."""
    from streamvae.config import TrackingSettings

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return TrackingSettings(work_dir=str(tmp_path / "mlflow"), experiment="tests")


@pytest.fixture(scope="session")
def small_bundle():
    """A calibrated small VAE bundle (trained once per session; treat as read-only)."""
    return factories.make_bundle()


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, small_bundle) -> Path:
    """The session's small bundle saved as a local bundle directory (a valid model URI)."""
    from streamvae.bundle import save_bundle

    return save_bundle(small_bundle, tmp_path_factory.mktemp("model") / "bundle")
