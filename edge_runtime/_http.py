"""``edge-runtime serve``: a small loopback HTTP endpoint for POS software (standard library).

Routes:

* ``POST /classify`` -- body: one JSON record -> ``200 {"segment", "probabilities",
  "model_version", "seq"}``; or ``{"records": [...]}`` -> ``200 {"results": [...]}``.
  A schema violation -> ``422 {"detail", "field", "rule", "row"}``; unreadable JSON -> 400;
  a body over 1 MiB -> 413; the outbox failing -> 503 (nothing was returned, so nothing lost).
* ``GET /health`` -> ``200 {"status": "ok", "model_version"}``.
* ``GET /status`` -> ``200`` the Runtime's status (model, input stats, outbox backlog).

Only loopback addresses are accepted: the endpoint has no authentication, it is for software
on the same terminal.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edge_runtime.exceptions import OutboxError, SchemaError
from edge_runtime.runtime import Runtime

__all__ = ["MAX_BODY_BYTES", "make_server"]

logger = logging.getLogger("edge_runtime")

MAX_BODY_BYTES = 1 << 20


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server_version = "edge-runtime"
    protocol_version = "HTTP/1.1"
    runtime: Runtime  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        logger.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        if self.path == "/health":
            self._send(200, {"status": "ok", "model_version": self.runtime.model_version})
        elif self.path == "/status":
            self._send(200, self.runtime.status())
        else:
            self._send(404, {"detail": f"no route GET {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/classify":
            self._send(404, {"detail": f"no route POST {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(411, {"detail": "Content-Length is required"})
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(413, {"detail": f"body over {MAX_BODY_BYTES} bytes"})
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError as exc:
            self._send(400, {"detail": f"body is not JSON: {exc}"})
            return
        try:
            if isinstance(body, dict) and set(body) == {"records"} and isinstance(body["records"], list):
                records = body["records"]
                results = [r.to_dict() for r in self.runtime.classify_many(records)] if records else []
                self._send(200, {"results": results})
            else:
                self._send(200, self.runtime.classify(body).to_dict())
        except SchemaError as exc:
            self._send(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                {"detail": str(exc), "field": exc.field, "rule": exc.rule, "row": exc.row},
            )
        except OutboxError as exc:
            logger.error("classification not stored: %s", exc)
            self._send(503, {"detail": str(exc)})


def make_server(runtime: Runtime, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A ready (not yet serving) server; ``port=0`` picks a free port (see server_address)."""
    if not _is_loopback(host):
        raise ValueError(
            f"The 'host' parameter of serve must be a loopback address (the endpoint has no "
            f"authentication). Got {host!r} instead."
        )
    handler = type("EdgeHandler", (_Handler,), {"runtime": runtime})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
