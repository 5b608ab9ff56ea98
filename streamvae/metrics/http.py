"""The HTTP endpoint: ``/metrics`` (Prometheus text format), ``/healthz`` and ``/readyz``."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

logger = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, dict[str, object]]]


SOCKET_TIMEOUT_S = 10.0  # an idle or half-open connection is closed after this
MAX_CONNECTIONS = 32  # connections served at once; more are closed at once


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``MAX_CONNECTIONS`` of them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # a scrape retries; a flood must not pile up threads
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetricsServer:
    """Serves metrics and health in a daemon thread.

    Each check returns ``(ok, details)`` and its endpoint answers 200 when ok, else 503:
    ``/healthz`` asks ``health`` (liveness: restart the process when it fails) and ``/readyz``
    asks ``ready`` (readiness: take the instance out of rotation), which defaults to ``health``.
    A connection idle for ``SOCKET_TIMEOUT_S`` is closed, and at most ``MAX_CONNECTIONS`` are
    served at once, so slow or half-open clients cannot pile up threads.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthCheck,
        host: str,
        port: int,
        ready: HealthCheck | None = None,
    ) -> None:
        handler = _handler_for(registry, {"/healthz": health, "/readyz": ready or health})
        self._server = _BoundedServer((host, port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL of the endpoint."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> MetricsServer:
        """Start serving."""
        self._thread.start()
        logger.info("metrics endpoint started url=%s/metrics", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()


def _handler_for(
    registry: CollectorRegistry, checks: dict[str, HealthCheck]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = SOCKET_TIMEOUT_S  # applied to the connection's socket by StreamRequestHandler

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path in checks:
                ok, details = checks[path]()
                body = json.dumps({"status": "ok" if ok else "unavailable"} | details).encode()
                self._reply(200 if ok else 503, "application/json", body)
            else:
                self._reply(404, "text/plain", b"not found: try /metrics or /healthz\n")

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("http " + format, *args)

    return Handler
