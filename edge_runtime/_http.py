"""``edge-runtime serve``: a small loopback HTTP endpoint for POS software (standard library).

Routes:

* ``POST /classify`` -- body: one JSON record -> ``200 {"segment", "probabilities",
  "model_version", "seq", "missing_inputs", "unknown_categories"}``; or a JSON list of records
  (or ``{"records": [...]}``) -> ``200 {"results": [...]}`` (all validated before any is
  classified). ``?explain=true`` adds ``"explanation"`` (per input, how much it moved the
  chosen segment's probability) to each result; explanations are never stored in the outbox.
  A schema violation -> ``422 {"detail", "field", "rule", "row"}``; unreadable JSON -> 400;
  a body over 1 MiB -> 413; the outbox failing -> 503 (nothing was returned, so nothing lost).
* ``POST /events`` -- body: one till event (docs: edge_runtime.customer_state) -> the event is
  applied to the customer's state once, then ``200 {"customer_ref", "applied", "duplicates",
  "skipped", "segment", "probabilities", "model_version", "seq", "record"}``: the customer's
  segment after the event (stored in the outbox), at ``?at=<ISO time>`` if given, else now.
  A bad event -> ``400 {"detail", "field", "rule"}`` and no state changed; a customer seen
  only through returns -> 200 with ``"segment": null``; ``at`` before the customer's newest
  line -> 422 (the event stays applied); a model without a feature program -> 409.
* ``GET /health`` -> ``200 {"status": "ok", "model_version"}``.
* ``GET /status`` -> ``200`` the Runtime's status (model, input stats, outbox backlog).

Only loopback addresses are accepted: the endpoint has no authentication, it is for software
on the same terminal. Because a web browser on the same terminal can reach loopback too, every
request must also pass (issue 10, item 10):

* ``Host`` is ``localhost``, ``127.0.0.1`` or ``[::1]`` (any port), else 421: a DNS-rebinding
  page (``evil.example`` resolving to 127.0.0.1) cannot read ``/status`` or classify;
* a request carrying ``Origin`` (browsers add it to cross-site requests) is refused with 403
  unless that origin is configured (``allowed_origins``; then CORS answers let it through);
* ``POST`` needs ``Content-Type: application/json`` (415 otherwise: an HTML form cannot send
  it without a preflight) and a ``Content-Length`` of plain digits up to 1 MiB (missing or
  chunked: 411, malformed or negative: 400, larger: 413); exactly that many bytes are read,
  under a socket timeout, so no header value makes the read unbounded.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Iterable
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge_runtime.customer_state import EventError, NoRecordError
from edge_runtime.exceptions import OutboxError, SchemaError
from edge_runtime.runtime import Runtime

__all__ = ["MAX_BODY_BYTES", "make_server"]

logger = logging.getLogger("edge_runtime")

MAX_BODY_BYTES = 1 << 20
LOCAL_HOST_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
# A client has this long to send its request line, headers and body (per socket operation).
SOCKET_TIMEOUT_S = 10.0
_DIGITS = re.compile(r"[0-9]{1,16}")
_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(?P<port>[0-9]{1,5}))?")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_local_host_header(values: list[str]) -> bool:
    """Exactly one Host header naming this terminal by a loopback name (any port)."""
    if len(values) != 1:
        return False
    match = _HOST.fullmatch(values[0].strip())
    return match is not None and match["name"].lower() in LOCAL_HOST_NAMES


class _Handler(BaseHTTPRequestHandler):
    server_version = "edge-runtime"
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S  # a slow or silent client cannot hold a thread forever
    runtime: Runtime  # set on the subclass made by make_server
    allowed_origins: frozenset[str] = frozenset()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        logger.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self._cors_headers()
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _cors_headers(self) -> None:
        origin = self.headers.get("Origin")
        if origin is not None and origin.rstrip("/") in self.allowed_origins:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Vary", "Origin")

    def _refuse(self, status: int, detail: str) -> None:
        """Answer and close: a refused request's body (if any) is never read."""
        self.close_connection = True
        self._send(status, {"detail": detail})

    def _trusted_caller(self) -> bool:
        """Host and Origin checks of every request; answers the refusal itself."""
        if not _is_local_host_header(self.headers.get_all("Host") or []):
            self._refuse(
                421, "the Host header must be localhost, 127.0.0.1 or [::1] (this endpoint serves this terminal only)"
            )
            return False
        origins = self.headers.get_all("Origin") or []
        if origins and (len(origins) > 1 or origins[0].rstrip("/") not in self.allowed_origins):
            self._refuse(403, f"requests from web origin {origins[0][:100]!r} are not accepted")
            return False
        return True

    def do_OPTIONS(self) -> None:  # noqa: N802 (stdlib name)
        """The CORS preflight of a configured browser origin (anything else was refused)."""
        if not self._trusted_caller():
            return
        self.send_response(204)
        self._cors_headers()
        self.send_header("Access-Control-Allow-Methods", "GET, POST")
        self.send_header("Access-Control-Allow-Headers", "Content-Type")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _read_json_body(self) -> tuple[bool, Any]:
        """(True, parsed body) or (False, None) after answering the refusal."""
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            self._refuse(415, f"Content-Type must be application/json, got {content_type or None!r}")
            return False, None
        if self.headers.get("Transfer-Encoding") is not None:
            self._refuse(411, "Transfer-Encoding is not accepted: send the body with a Content-Length")
            return False, None
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            self._refuse(411, "Content-Length is required")
            return False, None
        if len(lengths) > 1 or not _DIGITS.fullmatch(lengths[0].strip()):
            self._refuse(400, f"Content-Length must be one non-negative integer, got {', '.join(lengths)[:40]!r}")
            return False, None
        length = int(lengths[0])
        if length > MAX_BODY_BYTES:
            self._refuse(413, f"body over {MAX_BODY_BYTES} bytes")
            return False, None
        raw = self.rfile.read(length)  # exactly `length` bytes at most, under the socket timeout
        if len(raw) != length:
            self._refuse(400, f"body ended after {len(raw)} of {length} bytes")
            return False, None
        try:
            return True, json.loads(raw)
        except ValueError as exc:
            self._send(400, {"detail": f"body is not JSON: {exc}"})
            return False, None

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        if not self._trusted_caller():
            return
        if self.path == "/health":
            self._send(200, {"status": "ok", "model_version": self.runtime.model_version})
        elif self.path == "/status":
            self._send(200, self.runtime.status())
        else:
            self._send(404, {"detail": f"no route GET {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._trusted_caller():
            return
        route = urlsplit(self.path)
        if route.path == "/events":
            self._events(parse_qs(route.query))
            return
        if route.path != "/classify":
            self._refuse(404, f"no route POST {self.path}")
            return
        query = parse_qs(route.query, keep_blank_values=True)
        explain = query.pop("explain", ["false"])
        if query or len(explain) != 1 or explain[0] not in ("true", "false", "1", "0"):
            self._refuse(400, "POST /classify takes one optional query parameter, 'explain' (true or false)")
            return
        ok, body = self._read_json_body()
        if not ok:
            return
        try:
            self._send(200, self._classify(body, explain[0] in ("true", "1")))
        except SchemaError as exc:
            self._send(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                {"detail": str(exc), "field": exc.field, "rule": exc.rule, "row": exc.row},
            )
        except OutboxError as exc:
            logger.error("classification not stored: %s", exc)
            self._send(503, {"detail": str(exc)})

    def _classify(self, body: Any, explain: bool) -> dict[str, Any]:
        """One record -> its result; a list (or ``{"records": [...]}``) -> ``{"results": [...]}``."""
        if isinstance(body, dict) and set(body) == {"records"} and isinstance(body["records"], list):
            body = body["records"]
        if not isinstance(body, list):
            return self.runtime.classify(body, explain=explain).to_dict()
        if not body:
            return {"results": []}
        if not explain:
            return {"results": [r.to_dict() for r in self.runtime.classify_many(body)]}
        self.runtime.classifier.encode(body)  # every record valid before any is stored
        return {"results": [self.runtime.classify(record, explain=True).to_dict() for record in body]}

    def _events(self, query: dict[str, list[str]]) -> None:
        """``POST /events``: apply one till event, answer the customer's segment after it."""
        at = query.pop("at", [None])
        if query or len(at) != 1:
            self._refuse(400, "POST /events takes one optional query parameter, 'at' (an ISO 8601 time)")
            return
        if at[0] is not None:
            try:
                datetime.fromisoformat(at[0])
            except ValueError:
                self._refuse(400, f"query parameter 'at' must be an ISO 8601 time, got {at[0][:40]!r}")
                return
        ok, event = self._read_json_body()
        if not ok:
            return
        try:
            answer: dict[str, Any] = self.runtime.observe(event).to_dict()
        except EventError as exc:
            self._send(400, {"detail": str(exc), "field": exc.field, "rule": exc.rule})
            return
        except ValueError as exc:  # no feature program, or a state file of another program
            self._send(409, {"detail": str(exc)})
            return
        try:  # the event is applied (and stays applied): now the customer's segment after it
            answer.update(self.runtime.classify_customer(event["customer_id"], at[0]).to_dict())
        except NoRecordError as exc:  # seen only through returns so far: nothing to classify
            answer.update(segment=None, detail=str(exc))
        except EventError as exc:  # ?at= before this customer's newest line
            answer.update(segment=None, detail=str(exc), field=exc.field)
            self._send(422, answer)
            return
        except OutboxError as exc:
            logger.error("classification not stored: %s", exc)
            self._send(503, {**answer, "detail": str(exc)})
            return
        self._send(200, answer)


def make_server(
    runtime: Runtime, host: str = "127.0.0.1", port: int = 8765, *, allowed_origins: Iterable[str] = ()
) -> ThreadingHTTPServer:
    """A ready (not yet serving) server; ``port=0`` picks a free port (see server_address).

    ``allowed_origins``: browser origins (``scheme://host[:port]``) whose pages may call the
    endpoint; by default none (a request with an ``Origin`` header is refused)."""
    if not _is_loopback(host):
        raise ValueError(
            f"The 'host' parameter of serve must be a loopback address (the endpoint has no "
            f"authentication). Got {host!r} instead."
        )
    origins = frozenset(origin.rstrip("/") for origin in allowed_origins)
    handler = type("EdgeHandler", (_Handler,), {"runtime": runtime, "allowed_origins": origins})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
