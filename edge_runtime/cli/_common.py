"""What every ``edge-runtime`` command shares: usage errors, settings from flags, the Runtime.

Flags are named after the :class:`~edge_runtime._settings.Settings` field they override
(``dest``), so one function turns any command's flags into settings.
"""

from __future__ import annotations

import argparse
import signal
import threading
from dataclasses import fields
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from edge_runtime._settings import CONTRACTS, DURABILITIES, Settings, get_settings

if TYPE_CHECKING:
    from edge_runtime.classifier import Classifier
    from edge_runtime.outbox import Outbox
    from edge_runtime.runtime import Runtime

__all__ = [
    "Handler",
    "UsageError",
    "add_model_arguments",
    "close_runtime",
    "load_classifier",
    "open_outbox",
    "open_runtime",
    "outbox_options",
    "settings_from",
    "stop_after_round_on_sigterm",
    "stop_on_sigterm",
]

# Settings that are never flags: a secret on a command line shows up in process lists.
_NEVER_FLAGS = frozenset({"secret", "device_token"})


class UsageError(Exception):
    """A flag or setting is missing or wrong; printed as one line, exit code 2."""


class Handler(Protocol):
    """What each subcommand sets as ``handler``: parsed flags in, exit code out."""

    def __call__(self, args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int: ...


def add_model_arguments(parser: argparse.ArgumentParser, *, runtime: bool) -> None:
    """``--artifact`` / ``--public-key``, and with ``runtime`` the outbox and device flags."""
    parser.add_argument("--artifact", type=Path, help="artifact folder (EDGESEG_ARTIFACT)")
    parser.add_argument("--public-key", type=Path, help="trusted PEM key (EDGESEG_PUBLIC_KEY)")
    parser.add_argument(
        "--contract", choices=CONTRACTS,
        help="input contract: strict (default) refuses gaps training never had and unknown field names; "
        "lenient imputes and ignores them (EDGESEG_CONTRACT)",
    )  # fmt: skip
    if runtime:
        parser.add_argument("--outbox", type=Path, help="SQLite outbox path (EDGESEG_OUTBOX)")
        parser.add_argument("--device-id", help="this device's id (EDGESEG_DEVICE_ID)")
        parser.add_argument("--durability", choices=DURABILITIES, help="(EDGESEG_DURABILITY)")
        parser.add_argument("--max-backlog", type=int, help="(EDGESEG_MAX_BACKLOG)")


def settings_from(args: argparse.Namespace) -> Settings:
    """Config file, then ``EDGESEG_*`` variables, then the flags this command has."""
    overrides = {f.name: getattr(args, f.name, None) for f in fields(Settings) if f.name not in _NEVER_FLAGS}
    try:
        return get_settings().updated(**overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def outbox_options(settings: Settings) -> dict[str, Any]:
    """The Outbox keywords every command derives from settings (retention, disk)."""
    return {
        "retain_synced_rows": settings.retain_synced_rows,
        "retain_synced_days": settings.retain_synced_days,
        "min_free_bytes": int(settings.min_free_mb * 1e6),
    }


def open_outbox(settings: Settings) -> Outbox:
    """The device's outbox as ``sync`` and ``status`` open it (UsageError if not this device's)."""
    from edge_runtime.outbox import Outbox

    try:
        return Outbox(
            settings.outbox, device_id=settings.device_id, max_backlog=settings.max_backlog, **outbox_options(settings)
        )
    except ValueError as exc:
        raise UsageError(_with_rehome_hint(str(exc), settings)) from exc


def _with_rehome_hint(message: str, settings: Settings) -> str:
    """An outbox of another device id: say the one command that moves it (``outbox rehome``)."""
    if "belongs to device" not in message:
        return message
    return (
        f"{message}. If this device was registered after the outbox was made, move its unsynced results "
        f"to the registered id: edge-runtime outbox rehome --device-id {settings.device_id} "
        f"--outbox {settings.outbox}"
    )


def load_classifier(settings: Settings) -> Classifier:
    from edge_runtime.classifier import Classifier

    if settings.artifact is None:
        raise UsageError("no model: pass --artifact or set EDGESEG_ARTIFACT")
    return Classifier.load(settings.artifact, settings.public_key, contract=settings.contract)


def open_runtime(settings: Settings, customer_state_path: Path | None = None) -> Runtime:
    """The Runtime of ``classify``, ``serve`` and ``ingest``; close it with :func:`close_runtime`.

    ``customer_state_path``: the till's customer state (default: beside the outbox)."""
    from edge_runtime.runtime import Runtime

    if not settings.secret:
        raise UsageError("EDGESEG_SECRET is not set: the per-deployment secret that pseudonymises customer ids")
    try:
        return Runtime(
            load_classifier(settings), outbox_path=settings.outbox, device_id=settings.device_id,
            secret=settings.secret, public_key=settings.public_key, durability=settings.durability,
            max_backlog=settings.max_backlog, outbox_options=outbox_options(settings),
            customer_state_path=customer_state_path, contract=settings.contract,
        )  # fmt: skip
    except ValueError as exc:
        raise UsageError(_with_rehome_hint(str(exc), settings)) from exc


def close_runtime(runtime: Runtime, settings: Settings) -> None:
    """Spool the drift counts not saved yet (``sync`` sends them), then close the outbox."""
    from edge_runtime.sync import DriftSpool

    try:
        DriftSpool.for_outbox(settings.outbox).save(runtime.drift_snapshot(reset=True))
    finally:
        runtime.close()


def stop_on_sigterm() -> None:
    """A service manager's SIGTERM ends ``serve`` and ``sync --follow`` the way Ctrl-C does."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def stop_after_round_on_sigterm() -> threading.Event:
    """A SIGTERM sets the returned event instead of interrupting: a loop that checks it ends
    after the round in flight, so that round's report is still written (a service manager's
    stop never cuts a sync round in half; Ctrl-C still stops at once)."""
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    return stopping
