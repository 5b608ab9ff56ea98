from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from streamvae.metrics import MetricsServer, ServiceMetrics
from streamvae.types import ModelRef


@pytest.fixture
def server():
    metrics = ServiceMetrics(CollectorRegistry(), topic="payments")
    metrics.set_model(ModelRef("fraud", "3", "champion"), "neg_elbo", 12.5, 0.01)
    state = {"ok": True}
    srv = MetricsServer(
        metrics.registry, lambda: (state["ok"], {"model": "fraud/3"}), "127.0.0.1", 0
    ).start()
    yield srv, state, metrics
    srv.stop()


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_endpoint_exports_model_and_threshold(server):
    srv, _, _ = server
    status, body = _get(srv.url + "/metrics")
    assert status == 200
    assert (
        'streamvae_model_info{alias="champion",name="fraud",score_kind="neg_elbo",'
        'topic="payments",version="3"} 1.0' in body
    )
    assert "streamvae_threshold 12.5" in body
    assert 'streamvae_records_dead_lettered_total{reason="non_finite"} 0.0' in body
    assert "streamvae_model_loads_total 1.0" in body


def test_health_follows_the_check(server):
    srv, state, _ = server
    status, body = _get(srv.url + "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok", "model": "fraud/3"}
    state["ok"] = False
    status, body = _get(srv.url + "/readyz")
    assert status == 503 and json.loads(body)["status"] == "unavailable"
    assert _get(srv.url + "/nope")[0] == 404


def test_two_instances_do_not_collide():
    ServiceMetrics(CollectorRegistry())
    ServiceMetrics(CollectorRegistry())
    ServiceMetrics()


def test_liveness_and_readiness_can_differ():
    registry = CollectorRegistry()
    srv = MetricsServer(
        registry,
        lambda: (True, {"loop": "starting"}),
        "127.0.0.1",
        0,
        ready=lambda: (False, {"model": None}),
    ).start()
    try:
        assert _get(srv.url + "/healthz")[0] == 200
        status, body = _get(srv.url + "/readyz")
        assert status == 503 and json.loads(body) == {"status": "unavailable", "model": None}
    finally:
        srv.stop()


def test_idle_connections_are_closed_and_bounded(monkeypatch):
    """300 idle half-open connections kept 300 threads; now each times out, and at most
    ``MAX_CONNECTIONS`` are served at once while /metrics still answers."""
    import socket
    import threading
    import time

    from streamvae.metrics import http

    monkeypatch.setattr(http, "SOCKET_TIMEOUT_S", 0.5)
    metrics = ServiceMetrics(CollectorRegistry(), topic="payments")
    srv = MetricsServer(metrics.registry, lambda: (True, {}), "127.0.0.1", 0).start()
    host, port = srv._server.server_address[:2]
    before = threading.active_count()
    idle = [socket.create_connection((host, port)) for _ in range(100)]
    try:
        time.sleep(0.3)
        assert threading.active_count() - before <= http.MAX_CONNECTIONS
        deadline = time.monotonic() + 10
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert threading.active_count() <= before, "idle connections time out"
        status, body = _get(srv.url + "/metrics")
        assert status == 200 and "streamvae_up" in body
    finally:
        for s in idle:
            s.close()
        srv.stop()


def test_process_metrics_are_exported(server):
    srv, _, _ = server
    _, body = _get(srv.url + "/metrics")
    for name in ("process_resident_memory_bytes", "process_open_fds", "python_info"):
        assert name in body
