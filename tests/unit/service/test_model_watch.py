"""The model watcher thread survives any error and honours strict_versions."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from streamvae.errors import VersionMismatchError
from streamvae.metrics import ServiceMetrics
from streamvae.service import model_watch
from streamvae.service.model_watch import ModelWatcher
from streamvae.tracking.resolve import ResolvedModel
from streamvae.types import ModelRef


def _watcher(small_bundle, tmp_path, **extra) -> tuple[ModelWatcher, ServiceMetrics]:
    metrics = ServiceMetrics(CollectorRegistry())
    watcher = ModelWatcher(
        "models:/fraud@champion", role="champion", served_version="1", reference=small_bundle,
        workdir=tmp_path, metrics=metrics, interval_s=0.01, **extra,
    )  # fmt: skip
    return watcher, metrics


def _reloads(metrics: ServiceMetrics, result: str) -> float:
    value = metrics.registry.get_sample_value("streamvae_model_reloads_total", {"result": result})
    return value or 0.0


def test_an_unexpected_error_is_counted_and_the_thread_keeps_polling(
    small_bundle, tmp_path, monkeypatch
):
    calls = []

    def broken(uri):
        calls.append(uri)
        raise RuntimeError("registry client bug")  # not a StreamVAEError: killed the thread

    monkeypatch.setattr(model_watch, "alias_version", broken)
    watcher, metrics = _watcher(small_bundle, tmp_path)
    assert watcher.check_once() is None
    watcher.start()
    try:
        deadline = time.monotonic() + 10
        while len(calls) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watcher._thread.is_alive()
    finally:
        watcher.stop()
    assert len(calls) >= 5
    assert _reloads(metrics, "failed") >= 5


def _fake_registry(monkeypatch, small_bundle, tmp_path, *, drift: bool) -> list[bool]:
    seen: list[bool] = []
    monkeypatch.setattr(model_watch, "alias_version", lambda uri: "2")
    ref = ModelRef("fraud", "2", "champion")
    monkeypatch.setattr(
        model_watch, "resolve", lambda uri, dst: ResolvedModel(uri, "registry", tmp_path, ref)
    )

    def load(resolved, *, strict=False):
        seen.append(strict)
        if strict and drift:
            msg = "bundle was saved with torch='2.0.0', running '2.13.0'"
            raise VersionMismatchError(msg)
        return small_bundle

    monkeypatch.setattr(model_watch, "load_resolved", load)
    return seen


def test_strict_versions_refuses_a_drifted_version_once(small_bundle, tmp_path, monkeypatch):
    seen = _fake_registry(monkeypatch, small_bundle, tmp_path, drift=True)
    watcher, metrics = _watcher(small_bundle, tmp_path, strict=True)
    assert watcher.check_once() is None
    assert watcher.check_once() is None  # refused once per version, not downloaded again
    assert seen == [True]
    assert _reloads(metrics, "refused") == 1


@pytest.mark.parametrize("strict", [False, True])
def test_a_swap_loads_with_the_served_strictness(small_bundle, tmp_path, monkeypatch, strict):
    seen = _fake_registry(monkeypatch, small_bundle, tmp_path, drift=False)
    watcher, _ = _watcher(small_bundle, tmp_path, strict=strict)
    candidate = watcher.check_once()
    assert candidate is not None and candidate.ref.version == "2"
    assert seen == [strict]
