"""The one client a device uses to talk to head office, with the standard library only.

Everything the device says to central goes through :class:`HeadOfficeClient`: results batches
and drift reports (``edge_runtime.sync``), the model check, downloads and install reports
(``edge_runtime.updates``). It owns what those requests share, so each is written once:

* the URL (``base_url`` + route), the bearer token, ``Accept`` and ``User-Agent`` headers;
* JSON bodies, gzip-compressed when the route accepts it (central reads gzip on the batch route
  only) and the body is worth compressing;
* one retry policy (:class:`RetryPolicy`): transient failures (no connection, reset, timeout,
  408/425/429/5xx, a reply cut short) are retried with exponential backoff and full jitter,
  waiting at least what ``Retry-After`` asks (bounded by ``max_retry_after``); a refusal (401,
  403, 404, 409, 413, 422, ...) is final and raised as :class:`~edge_runtime.exceptions.SyncError`
  with its ``status``;
* where the token may go (issue 10, item 7): only to central's own origin (scheme, host and
  port of ``base_url``). A URL central hands out that points elsewhere is refused before any
  byte is sent, redirects are never followed (a 3xx is an error), and plain ``http`` is
  refused unless ``allow_http=True`` (development on loopback: ``EDGESEG_ALLOW_HTTP=1``).

The network sits behind :class:`Transport`, shaped like httpx's (``handle_request(Request) ->
Response``): :class:`UrllibTransport` on a device; tests pass one over FastAPI's TestClient or
one that injects faults. A transport returns central's answer whatever its status and raises
:class:`~edge_runtime.exceptions.RetryableError` only when no complete answer arrived::

    head_office = HeadOfficeClient("https://central.example", device_id="d-01", token="…")
    ack = head_office.request_json("POST", "/v1/results:batch", payload, compress=True)
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from edge_runtime.exceptions import RetryableError, SyncError

__all__ = [
    "HeadOfficeClient",
    "Request",
    "Response",
    "RetryPolicy",
    "Transport",
    "UrllibTransport",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

USER_AGENT = "edgeseg-edge-runtime/0.1"
# Statuses that mean "not now" rather than "no": the same request may succeed later.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
_DETAIL_CHARS = 500  # central's error detail is quoted in messages, but never a whole page
_DEFAULT_PORTS = {"http": 80, "https": 443}

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Request:
    """One HTTP request as the client built it (headers final, body already encoded)."""

    method: str
    url: str
    headers: Mapping[str, str]
    content: bytes | None = None
    timeout: float = 10.0


@dataclass(frozen=True)
class Response:
    """Central's answer: status, body and headers (header names in lower case)."""

    status_code: int
    content: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


class Transport(Protocol):
    """Sends one request and returns central's answer, whatever its status.

    Raise :class:`~edge_runtime.exceptions.RetryableError` when no complete answer arrived
    (refused, reset, timed out, cut short); everything else is the client's to judge.
    """

    def handle_request(self, request: Request) -> Response: ...


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: urllib would resend the bearer token to wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError, which becomes a Response


class UrllibTransport:
    """The standard library's HTTP client: a device never installs a third-party one.

    Redirects are not followed: a 3xx comes back as central's answer (the client refuses it).
    """

    # One opener for every instance (subclasses need not call __init__); like urllib's global one.
    _opener = urllib.request.build_opener(_NoRedirects())

    def handle_request(self, request: Request) -> Response:
        raw = urllib.request.Request(
            request.url, data=request.content, headers=dict(request.headers), method=request.method
        )
        try:
            with self._opener.open(raw, timeout=request.timeout) as answer:
                body = answer.read()
                expected = answer.headers.get("Content-Length")
                if expected is not None and expected.isdigit() and len(body) != int(expected):
                    raise RetryableError(f"{request.method} {request.url}: reply truncated")
                return Response(answer.status, body, _lower(answer.headers.items()))
        except urllib.error.HTTPError as exc:  # a non-2xx answer is an answer, not a failure
            try:
                body = exc.read()
            except (OSError, http.client.HTTPException):
                body = b""
            return Response(exc.code, body, _lower(exc.headers.items() if exc.headers else ()))
        except (http.client.HTTPException, OSError) as exc:
            # URLError, ConnectionError (refused, reset), TimeoutError are all OSErrors.
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise RetryableError(f"{request.method} {request.url}: {type(exc).__name__}: {reason}") from exc


def _lower(items: Any) -> dict[str, str]:
    return {str(name).lower(): str(value) for name, value in items}


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date).

    >>> parse_retry_after("7")
    7.0
    >>> parse_retry_after(None) is None
    True
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How the client retries a transient failure: the device's only retry policy.

    Attempt ``n`` (0-based) waits uniformly in ``[0, min(backoff_cap, backoff_base * 2**n)]``
    ("full jitter", so a fleet coming back after an outage does not arrive in lockstep), or
    exactly the ceiling with ``jitter=False``; at least central's ``Retry-After``, itself capped
    at ``max_retry_after`` so a wrong header cannot park a device for a day.
    """

    max_retries: int = 8
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    jitter: bool = True
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(
                f"The 'max_retries' parameter of RetryPolicy must be an int >= 0. Got {self.max_retries!r} instead."
            )
        if not 0 < self.backoff_base <= self.backoff_cap:
            raise ValueError(
                "The 'backoff_base' and 'backoff_cap' parameters of RetryPolicy must satisfy "
                f"0 < backoff_base <= backoff_cap. Got {self.backoff_base!r} and {self.backoff_cap!r}."
            )
        if self.max_retry_after < 0:
            raise ValueError(
                f"The 'max_retry_after' parameter of RetryPolicy must be >= 0. Got {self.max_retry_after!r} instead."
            )

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2**attempt))
        wait = rng.uniform(0, ceiling) if self.jitter else ceiling
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


class HeadOfficeClient:
    """Authenticated JSON requests to central, retried by one :class:`RetryPolicy`.

    ``sleep`` and ``random_state`` are there so tests run without waiting and with
    reproducible jitter. ``on_retry(error, delay)`` arguments let a caller count retries.
    ``allow_http``: accept a plain ``http://`` base URL (the token then travels in clear
    text: development and loopback tests only).
    """

    def __init__(
        self,
        base_url: str,
        *,
        device_id: str,
        token: str,
        transport: Transport | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        gzip_min_bytes: int = 1024,
        sleep: Callable[[float], None] = time.sleep,
        random_state: int | random.Random | None = None,
        allow_http: bool = False,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"The 'base_url' parameter of HeadOfficeClient must be an http(s) URL. Got {base_url!r} instead."
            )
        if parsed.scheme == "http" and not allow_http:
            raise ValueError(
                f"The 'base_url' parameter of HeadOfficeClient must be an https URL: plain http sends the "
                f"device token in clear text. Got {base_url!r} instead (for development only, set "
                "EDGESEG_ALLOW_HTTP=1 or pass --allow-http)."
            )
        self.origin = _origin(base_url)
        if not device_id:
            raise ValueError("The 'device_id' parameter of HeadOfficeClient must be non-empty. Got '' instead.")
        if timeout <= 0:
            raise ValueError(f"The 'timeout' parameter of HeadOfficeClient must be > 0. Got {timeout!r} instead.")
        self.base_url = base_url.rstrip("/")
        self.device_id = device_id
        self.transport: Transport = transport if transport is not None else UrllibTransport()
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self.gzip_min_bytes = gzip_min_bytes
        self.sleep = sleep
        self._random = random_state if isinstance(random_state, random.Random) else random.Random(random_state)
        self._token = token

    def __repr__(self) -> str:  # never the token
        return f"HeadOfficeClient({self.base_url!r}, device_id={self.device_id!r})"

    def url(self, path_or_url: str) -> str:
        """A route (``/v1/...``) or a URL central handed out, made absolute.

        SyncError (final, nothing sent) when the result is not on central's own origin: an
        absolute or scheme-relative URL in an offer must not receive this device's token.
        """
        joined = urllib.parse.urljoin(self.base_url + "/", path_or_url)
        try:
            origin = _origin(joined)
        except ValueError:
            origin = None
        if origin != self.origin:
            raise SyncError(
                f"refusing to send this device's token to {joined!r}: only central's own origin "
                f"{_show_origin(self.origin)} is contacted"
            )
        return joined

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """The policy's wait before retry ``attempt + 1`` (also spaces ``follow`` rounds)."""
        return self.retry.delay(attempt, self._random, retry_after)

    # ------------------------------------------------------------------ requests
    def request(
        self,
        method: str,
        path_or_url: str,
        payload: Mapping[str, Any] | None = None,
        *,
        accept: str = "*/*",
        compress: bool = False,
        on_retry: Callable[[RetryableError, float], None] | None = None,
    ) -> bytes:
        """The body of central's 2xx answer; retried per the policy, else SyncError."""
        return self._with_retries(self._build(method, path_or_url, payload, accept, compress), _raw, on_retry)

    def request_json(
        self,
        method: str,
        path_or_url: str,
        payload: Mapping[str, Any] | None = None,
        *,
        compress: bool = False,
        on_retry: Callable[[RetryableError, float], None] | None = None,
    ) -> dict[str, Any]:
        """Central's 2xx JSON object; an unreadable one counts as a reply cut short (retried)."""
        request = self._build(method, path_or_url, payload, "application/json", compress)
        return self._with_retries(request, _json_object, on_retry)

    def _build(
        self, method: str, path_or_url: str, payload: Mapping[str, Any] | None, accept: str, compress: bool
    ) -> Request:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": accept, "User-Agent": USER_AGENT}
        content = None
        if payload is not None:
            content = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
            if compress and len(content) >= self.gzip_min_bytes:
                content = gzip.compress(content, compresslevel=5)
                headers["Content-Encoding"] = "gzip"
        return Request(method=method, url=self.url(path_or_url), headers=headers, content=content, timeout=self.timeout)

    def _with_retries(
        self,
        request: Request,
        read: Callable[[Request, bytes], T],
        on_retry: Callable[[RetryableError, float], None] | None,
    ) -> T:
        attempt = 0
        while True:
            try:
                return read(request, _checked(request, self.transport.handle_request(request)))
            except RetryableError as exc:
                if attempt >= self.retry.max_retries:
                    raise RetryableError(
                        f"central unreachable after {attempt + 1} attempts: {exc}",
                        status=exc.status,
                        retry_after=exc.retry_after,
                    ) from exc
                delay = self.backoff(attempt, exc.retry_after)
                log.info("attempt %d failed (%s); retrying in %.2fs", attempt + 1, exc, delay)
                if on_retry is not None:
                    on_retry(exc, delay)
                attempt += 1
                self.sleep(delay)


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the default port filled in; ValueError if it has none."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in _DEFAULT_PORTS or not host:
        raise ValueError(f"{url!r} is not an absolute http(s) URL")
    return parts.scheme, host, parts.port if parts.port is not None else _DEFAULT_PORTS[parts.scheme]


def _show_origin(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _checked(request: Request, response: Response) -> bytes:
    """The body of a 2xx answer; RetryableError for "not now", SyncError for "no"."""
    status = response.status_code
    if 200 <= status < 300:
        return response.content
    if 300 <= status < 400:
        location = response.headers.get("location", "")[:_DETAIL_CHARS]
        raise SyncError(
            f"{request.method} {request.url}: HTTP {status} redirect to {location!r} not followed: "
            "the device talks to central's own origin only",
            status=status,
        )
    message = f"{request.method} {request.url}: HTTP {status}"
    detail = _detail(response.content)
    if detail:
        message += f": {detail}"
    if status in RETRYABLE_STATUSES or status >= 500:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise RetryableError(message, status=status, retry_after=retry_after)
    raise SyncError(message, status=status)


def _detail(content: bytes) -> str:
    try:
        body = json.loads(content or b"{}")
    except ValueError:
        return ""
    detail = body.get("detail", "") if isinstance(body, dict) else ""
    shown = detail if isinstance(detail, str) else json.dumps(detail)
    return shown[:_DETAIL_CHARS]


def _raw(request: Request, content: bytes) -> bytes:
    return content


def _json_object(request: Request, content: bytes) -> dict[str, Any]:
    try:
        body = json.loads(content)
    except ValueError as exc:  # a reply cut short: the request may or may not have been applied
        raise RetryableError(f"{request.method} {request.url}: unreadable answer: {exc}") from exc
    if not isinstance(body, dict):
        raise RetryableError(f"{request.method} {request.url}: answer is not a JSON object: {content[:200]!r}")
    return body
