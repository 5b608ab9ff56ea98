"""A loopback stand-in for a Confluent Schema Registry, for tests.

No registry server can be installed here; this serves the registry's documented REST answers
for ``GET /schemas/ids/{id}``: ``{"schema": "<the schema as a JSON string>"}``, 404 with
``error_code`` 40403 for an unknown id, 401 when basic-auth credentials are required and wrong.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackRegistry:
    """Serves ``schemas`` (id -> Avro schema) on 127.0.0.1; ``requests`` records each path."""

    def __init__(self, schemas: dict[int, dict], credentials: tuple[str, str] | None = None):
        self.schemas = schemas
        self.requests: list[str] = []
        expected = None
        if credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry.requests.append(self.path)
                if expected is not None and self.headers.get("Authorization") != expected:
                    self._answer(401, {"error_code": 401, "message": "Unauthorized"})
                    return
                parts = self.path.strip("/").split("/")
                found = parts[:2] == ["schemas", "ids"] and parts[2].isdigit()
                if found and int(parts[2]) in registry.schemas:
                    self._answer(200, {"schema": json.dumps(registry.schemas[int(parts[2])])})
                else:
                    self._answer(404, {"error_code": 40403, "message": "Schema not found"})

            def _answer(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self.server.shutdown()
        self.server.server_close()
