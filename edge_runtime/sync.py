"""Deliver the outbox to head office exactly once (DESIGN §5), with the standard library only.

The device keeps every result in its outbox until central has acknowledged it. A sync round
reads a bounded batch (``outbox.pending(batch_size)``), POSTs it gzip-compressed to
``/v1/results:batch`` and marks synced only the seqs of that batch that central answered for.
Central stores each ``(device_id, seq)`` once, so resending after a lost reply is harmless: the
reply then counts them as duplicates, which also means central holds them.

Transient failures (no connection, reset, timeout, 408/429/5xx, a truncated reply) are retried
with exponential backoff and full jitter, honouring ``Retry-After``; a refusal (401, 403, 413,
422, …) is final for this round and raised as :class:`~edge_runtime.exceptions.SyncError`.
Nothing here deletes a row: the outbox decides what to prune, and only among synced rows.

The network sits behind :class:`Transport` (``send(payload) -> ack``) so tests inject faults::

    client = SyncClient("http://127.0.0.1:8000", device_id="d-01", token="…")
    report = client.sync_once(outbox)
"""

from __future__ import annotations

import argparse
import email.utils
import gzip
import http.client
import json
import logging
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge_runtime.exceptions import SyncError

__all__ = [
    "BATCH_PATH",
    "DRIFT_PATH",
    "HttpTransport",
    "RetryableError",
    "SyncClient",
    "SyncReport",
    "Transport",
    "add_sync_commands",
]

log = logging.getLogger(__name__)

BATCH_PATH = "/v1/results:batch"
DRIFT_PATH = "/v1/drift"
USER_AGENT = "edgeseg-edge-runtime/0.1"


class RetryableError(SyncError):
    """A failure worth retrying (network, 408/429/5xx); ``retry_after`` seconds if central said."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Transport(Protocol):
    """Sends one batch payload and returns central's ack ``{"acked_through", "stored", ...}``.

    Raise :class:`RetryableError` for transient failures and :class:`SyncError` for refusals.
    """

    def send(self, payload: Mapping[str, Any]) -> dict[str, Any]: ...


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
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class HttpTransport:
    """``urllib`` transport: JSON bodies (gzip above ``gzip_min_bytes``), bearer token."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str,
        timeout: float = 10.0,
        gzip_min_bytes: int = 1024,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"The 'base_url' parameter of HttpTransport must be an http(s) URL. Got {base_url!r} instead."
            )
        if timeout <= 0:
            raise ValueError(f"The 'timeout' parameter of HttpTransport must be > 0. Got {timeout!r} instead.")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.gzip_min_bytes = gzip_min_bytes

    def request(
        self,
        method: str,
        path_or_url: str,
        payload: Mapping[str, Any] | None = None,
        *,
        accept: str = "application/json",
    ) -> bytes:
        """One HTTP exchange; the response body, or RetryableError / SyncError."""
        url = urllib.parse.urljoin(self.base_url + "/", path_or_url)
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": accept,
            "User-Agent": USER_AGENT,
        }
        data = None
        if payload is not None:
            data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
            if len(data) >= self.gzip_min_bytes:
                data = gzip.compress(data, compresslevel=5)
                headers["Content-Encoding"] = "gzip"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                body = response.read()
                expected = response.headers.get("Content-Length")
                if expected is not None and expected.isdigit() and len(body) != int(expected):
                    raise RetryableError(f"{method} {url}: reply truncated")
                return body
        except SyncError:
            raise
        except urllib.error.HTTPError as exc:
            raise _http_error(method, url, exc) from exc
        except (http.client.HTTPException, OSError) as exc:
            # URLError, ConnectionError (refused, reset), TimeoutError are all OSErrors.
            reason = getattr(exc, "reason", exc)
            raise RetryableError(f"{method} {url}: {type(exc).__name__}: {reason}") from exc

    def send(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        body = self.request("POST", BATCH_PATH, payload)
        try:
            ack = json.loads(body)
        except ValueError as exc:  # a reply cut short: the batch may or may not be stored
            raise RetryableError(f"unreadable ack from central: {exc}") from exc
        if not isinstance(ack, dict) or not isinstance(ack.get("acked_through"), int):
            raise RetryableError(f"unexpected ack from central: {body[:200]!r}")
        return ack


def _http_error(method: str, url: str, exc: urllib.error.HTTPError) -> SyncError:
    try:
        detail = json.loads(exc.read() or b"{}").get("detail", "")
    except (ValueError, AttributeError, OSError, http.client.HTTPException):
        detail = ""
    message = f"{method} {url}: HTTP {exc.code}" + (f": {detail}" if detail else "")
    if exc.code in (408, 425, 429) or exc.code >= 500:
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        return RetryableError(message, retry_after=retry_after)
    error = SyncError(message)
    error.status = exc.code  # type: ignore[attr-defined]
    return error


@dataclass
class SyncReport:
    """What one ``sync_once`` round did."""

    batches: int = 0
    sent: int = 0
    marked: int = 0
    stored: int = 0
    duplicates: int = 0
    retries: int = 0
    acked_through: int | None = None
    backlog: int | None = None
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SyncClient:
    """Drains an outbox to central in bounded batches; safe to interrupt at any point.

    ``transport`` defaults to :class:`HttpTransport`; ``sleep`` and ``random_state`` are there
    so tests run without waiting and with reproducible jitter.
    """

    def __init__(
        self,
        base_url: str,
        *,
        device_id: str,
        token: str,
        transport: Transport | None = None,
        batch_size: int = 500,
        max_retries: int = 8,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
        jitter: bool = True,
        timeout: float = 10.0,
        max_retry_after: float = 300.0,
        max_batches: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random_state: int | random.Random | None = None,
    ) -> None:
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("max_retries", max_retries, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(
                    f"The {name!r} parameter of SyncClient must be an int >= {low}. Got {value!r} instead."
                )
        if not 0 < backoff_base <= backoff_cap:
            raise ValueError(
                "The 'backoff_base' and 'backoff_cap' parameters of SyncClient must satisfy "
                f"0 < backoff_base <= backoff_cap. Got {backoff_base!r} and {backoff_cap!r}."
            )
        if not device_id:
            raise ValueError("The 'device_id' parameter of SyncClient must be non-empty.")
        self.base_url = base_url
        self.device_id = device_id
        self.transport = transport or HttpTransport(base_url, token=token, timeout=timeout)
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.jitter = jitter
        self.max_retry_after = max_retry_after
        self.max_batches = max_batches
        self._sleep = sleep
        self._random = random_state if isinstance(random_state, random.Random) else random.Random(random_state)
        self._highest_ack = 0

    # ------------------------------------------------------------------ backoff
    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]; at least ``Retry-After``."""
        ceiling = min(self.backoff_cap, self.backoff_base * (2**attempt))
        delay = self._random.uniform(0, ceiling) if self.jitter else ceiling
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    # ------------------------------------------------------------------ one batch
    def _send_with_retries(self, payload: Mapping[str, Any], report: SyncReport) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                return self.transport.send(payload)
            except RetryableError as exc:
                report.errors.append(str(exc))
                if attempt >= self.max_retries:
                    raise SyncError(f"central unreachable after {attempt + 1} attempts: {exc}") from exc
                delay = self.backoff_delay(attempt, exc.retry_after)
                log.info("sync attempt %d failed (%s); retrying in %.2fs", attempt + 1, exc, delay)
                report.retries += 1
                attempt += 1
                self._sleep(delay)

    @staticmethod
    def acknowledged(seqs: Iterable[int], ack: Mapping[str, Any]) -> list[int]:
        """The seqs of a batch that central's ack proves it holds.

        A 2xx ack whose ``stored + duplicates`` covers the whole batch means every seq of it is
        held (newly stored or already there). Otherwise only seqs at or below ``acked_through``
        (held contiguously from 1) are provably held.
        """
        seqs = list(seqs)
        acked_through = int(ack.get("acked_through", 0))
        covered = int(ack.get("stored", -1)) + int(ack.get("duplicates", -1))
        if covered == len(seqs):
            return seqs
        return [s for s in seqs if s <= acked_through]

    def sync_once(self, outbox: Any) -> SyncReport:
        """Send pending results until the outbox has none (or ``max_batches``); mark acked ones.

        Raises SyncError when central refuses a batch or stays unreachable; the report of what
        was done before is on the exception as ``.report``. Unsynced rows are never touched.
        """
        report = SyncReport()
        try:
            while self.max_batches is None or report.batches < self.max_batches:
                rows = outbox.pending(self.batch_size)
                if not rows:
                    break
                payload: dict[str, Any] = {"device_id": self.device_id, "results": rows}
                backlog = _safe_backlog(outbox)
                if backlog is not None:
                    payload["backlog"] = max(0, backlog - len(rows))
                ack = self._send_with_retries(payload, report)
                seqs = [int(row["seq"]) for row in rows]
                held = self.acknowledged(seqs, ack)
                report.batches += 1
                report.sent += len(rows)
                report.stored += int(ack.get("stored", 0))
                report.duplicates += int(ack.get("duplicates", 0))
                report.acked_through = int(ack["acked_through"])
                if report.acked_through < self._highest_ack:
                    log.warning(
                        "central's watermark went back from %d to %d: was its database restored?",
                        self._highest_ack,
                        report.acked_through,
                    )
                self._highest_ack = max(self._highest_ack, report.acked_through)
                if held:
                    report.marked += outbox.mark_synced(held)
                if len(held) < len(seqs):
                    raise SyncError(
                        f"central acknowledged {len(held)} of {len(seqs)} results "
                        f"(ack {dict(ack)}); the rest stay in the outbox"
                    )
        except SyncError as exc:
            report.backlog = _safe_backlog(outbox)
            exc.report = report  # type: ignore[attr-defined]
            raise
        report.backlog = _safe_backlog(outbox)
        return report

    def report_drift(self, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``Runtime.drift_snapshot()`` to ``/v1/drift``; central answers PSI per input.

        Needs a transport with ``request`` (HttpTransport has it). Raises SyncError.
        """
        request = getattr(self.transport, "request", None)
        if request is None:
            raise SyncError("this transport cannot report drift (it has no request method)")
        payload = {
            "device_id": self.device_id,
            "model_version": snapshot["model_version"],
            "histograms": {name: list(entry["counts"]) for name, entry in snapshot["inputs"].items()},
        }
        return json.loads(request("POST", DRIFT_PATH, payload))

    def follow(
        self,
        outbox: Any,
        *,
        interval: float = 5.0,
        stop: Callable[[], bool] = lambda: False,
        on_report: Callable[[SyncReport | SyncError], None] | None = None,
    ) -> None:
        """Sync, sleep ``interval`` (backing off while central is away), until ``stop()``."""
        failures = 0
        while not stop():
            try:
                outcome: SyncReport | SyncError = self.sync_once(outbox)
                failures = 0
                delay = interval
            except SyncError as exc:
                outcome = exc
                failures += 1
                delay = max(interval, self.backoff_delay(failures))
                log.warning("sync failed: %s", exc)
            if on_report is not None:
                on_report(outcome)
            if stop():
                return
            self._sleep(delay)


def _safe_backlog(outbox: Any) -> int | None:
    try:
        return int(outbox.backlog())
    except Exception:  # noqa: BLE001 - a backlog figure is informative only
        return None


# ---------------------------------------------------------------------- command line
def add_sync_commands(subparsers: Any) -> None:
    """Add ``sync`` to ``edge-runtime``'s subparsers; its ``func(args) -> int`` runs it.

    ``edge_runtime/cli.py`` calls ``add_sync_commands(subparsers)`` and then
    ``return args.func(args)`` for the chosen subcommand.
    """
    sync = subparsers.add_parser("sync", help="send unsynced results to head office")
    add_connection_arguments(sync)
    sync.add_argument("--outbox", default=None, help="the outbox file (default: EDGESEG_OUTBOX)")
    sync.add_argument("--batch-size", type=int, default=500)
    sync.add_argument("--follow", action="store_true", help="keep syncing every --interval s")
    sync.add_argument("--interval", type=float, default=5.0)
    sync.add_argument("--max-retries", type=int, default=8)
    sync.add_argument("--timeout", type=float, default=10.0)
    sync.set_defaults(func=run_sync_command)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--central",
        default=os.environ.get("EDGESEG_CENTRAL_URL"),
        help="head office base URL (default: $EDGESEG_CENTRAL_URL)",
    )
    parser.add_argument(
        "--device-id",
        default=os.environ.get("EDGESEG_DEVICE_ID"),
        help="this device's id (default: $EDGESEG_DEVICE_ID)",
    )
    parser.add_argument(
        "--token-file",
        default=os.environ.get("EDGESEG_DEVICE_TOKEN_FILE"),
        help="file holding the device token (default: $EDGESEG_DEVICE_TOKEN_FILE, else $EDGESEG_DEVICE_TOKEN)",
    )


def edge_settings() -> Any:
    """The edge runtime's own settings (EDGESEG_OUTBOX, EDGESEG_PUBLIC_KEY, config file)."""
    from edge_runtime._settings import get_settings

    return get_settings()


def connection_from_args(args: argparse.Namespace) -> tuple[str, str, str]:
    """(central URL, device id, token), or SystemExit with what is missing."""
    token = os.environ.get("EDGESEG_DEVICE_TOKEN", "")
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as handle:
            token = handle.read().strip()
    missing = [
        label
        for label, value in (
            ("--central (or EDGESEG_CENTRAL_URL)", args.central),
            ("--device-id (or EDGESEG_DEVICE_ID)", args.device_id),
            ("--token-file (or EDGESEG_DEVICE_TOKEN)", token),
        )
        if not value
    ]
    if missing:
        raise SystemExit(f"edge-runtime: missing {', '.join(missing)}")
    return args.central, args.device_id, token


def run_sync_command(args: argparse.Namespace) -> int:
    from edge_runtime.outbox import Outbox

    central, device_id, token = connection_from_args(args)
    client = SyncClient(
        central,
        device_id=device_id,
        token=token,
        batch_size=args.batch_size,
        max_retries=args.max_retries,
        timeout=args.timeout,
    )
    outbox = Outbox(args.outbox or edge_settings().outbox, device_id=device_id)

    def show(outcome: SyncReport | SyncError) -> None:
        if isinstance(outcome, SyncReport):
            print(json.dumps(outcome.to_dict() | {"errors": len(outcome.errors)}), flush=True)
        else:
            print(f"edge-runtime: sync failed: {outcome}", flush=True)

    if args.follow:
        try:
            client.follow(outbox, interval=args.interval, on_report=show)
        except KeyboardInterrupt:
            return 0
        return 0
    try:
        report = client.sync_once(outbox)
    except SyncError as exc:
        show(exc)
        return 1
    show(report)
    return 0
