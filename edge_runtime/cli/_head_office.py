"""The commands that talk to head office: ``sync [--follow]`` and ``update [--rollback]``.

Both build one :class:`~edge_runtime.client.HeadOfficeClient` from settings and flags (URL,
device id, token, timeout, retries) and hand it to the domain object; this module parses and
prints, nothing more.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from edge_runtime._settings import Settings
from edge_runtime.cli._common import UsageError, open_outbox, settings_from, stop_after_round_on_sigterm
from edge_runtime.client import HeadOfficeClient, RetryPolicy
from edge_runtime.exceptions import ModelLoadError, SyncError
from edge_runtime.outcomes import OutcomeSpool, send_outcomes
from edge_runtime.runtime import customer_state_path_for
from edge_runtime.sync import DriftSpool, ErasureTarget, SyncClient, SyncReport
from edge_runtime.updates import ModelUpdater

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add this module's commands to ``edge-runtime``'s subparsers."""
    p = sub.add_parser("sync", help="send unsynced results and drift counts to head office")
    _add_connection_arguments(p)
    p.add_argument("--outbox", type=Path, help="the outbox file (EDGESEG_OUTBOX)")
    p.add_argument("--batch-size", type=int, default=500, help="results per request (default 500)")
    p.add_argument("--follow", action="store_true", help="keep syncing every --interval s until stopped")
    p.add_argument(
        "--interval",
        dest="sync_interval_s",
        type=float,
        metavar="SECONDS",
        help="seconds between --follow rounds (EDGESEG_SYNC_INTERVAL_S, default 5)",
    )
    p.add_argument(
        "--drift-interval",
        dest="drift_interval_s",
        type=float,
        metavar="SECONDS",
        help="seconds between drift reports with --follow (EDGESEG_DRIFT_INTERVAL_S, default 900); "
        "without --follow, spooled drift counts are sent once",
    )
    p.set_defaults(handler=run_sync)

    p = sub.add_parser("update", help="fetch, verify and install the model head office rolled out")
    _add_connection_arguments(p)
    p.add_argument("--models-dir", type=Path, required=True, help="holds <name>/<version> and 'current'")
    p.add_argument("--public-key", type=Path, help="trusted key (EDGESEG_PUBLIC_KEY, else the key folder)")
    p.add_argument("--rollback", action="store_true", help="go back to the previous model")
    p.add_argument(
        "--follow", action="store_true", help="keep the model in line: long-poll central, update on a change"
    )
    p.add_argument("--poll-interval", type=float, default=300.0, help="--follow: seconds between polls (fall-back)")
    p.add_argument("--long-poll", type=float, default=25.0, help="--follow: seconds central holds a wait (0: poll)")
    p.add_argument("--jitter", type=float, default=5.0, help="--follow: random wait before switching, up to this")
    p.set_defaults(handler=run_update)


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--central", dest="central_url", metavar="URL", help="head office base URL (EDGESEG_CENTRAL_URL)"
    )
    parser.add_argument("--device-id", help="this device's id (EDGESEG_DEVICE_ID)")
    parser.add_argument(
        "--token-file",
        dest="device_token_file",
        type=Path,
        metavar="FILE",
        help="file holding the device token (EDGESEG_DEVICE_TOKEN_FILE, else EDGESEG_DEVICE_TOKEN)",
    )
    parser.add_argument(
        "--allow-http",
        action="store_true",
        default=None,
        help="accept a plain http:// central URL: development only, the token travels in clear text "
        "(EDGESEG_ALLOW_HTTP=1)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    parser.add_argument("--max-retries", type=int, default=8, help="retries per request (default 8)")


def head_office_from(args: argparse.Namespace, settings: Settings) -> HeadOfficeClient:
    """The client both commands use, or UsageError naming what is missing."""
    try:
        token = settings.read_device_token()
        missing = [
            label
            for label, value in (
                ("--central (or EDGESEG_CENTRAL_URL)", settings.central_url),
                ("--token-file (or EDGESEG_DEVICE_TOKEN)", token),
            )
            if not value
        ]
        if missing or settings.central_url is None or token is None:
            raise UsageError(f"missing {', '.join(missing)}")
        return HeadOfficeClient(
            settings.central_url,
            device_id=settings.device_id,
            token=token,
            timeout=args.timeout,
            retry=RetryPolicy(max_retries=args.max_retries),
            allow_http=settings.allow_http,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def run_sync(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    settings = settings_from(args)
    head_office = head_office_from(args, settings)
    try:
        client = SyncClient(
            head_office,
            batch_size=args.batch_size,
            privacy=settings.privacy_budget(),  # noised aggregates (docs/PRIVACY.md); None if EDGESEG_DP_EPSILON=0
            erasure=ErasureTarget(settings.outbox, customer_state_path_for(settings.outbox)),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    spool = DriftSpool.for_outbox(settings.outbox)
    failed = False

    outcomes = OutcomeSpool(settings.outbox)

    def show(outcome: SyncReport | SyncError) -> None:
        nonlocal failed
        if isinstance(outcome, SyncReport):
            try:  # the till's own outcomes (edge_runtime.outcomes) go with every round
                sent = send_outcomes(head_office.request_json, settings.device_id, outcomes)
            except SyncError as exc:
                show(exc)
                sent = 0
            stdout.write(json.dumps(outcome.to_dict() | {"errors": len(outcome.errors), "outcomes_sent": sent}) + "\n")
            stdout.flush()
        else:
            failed = True
            stderr.write(f"edge-runtime sync: failed: {outcome}\n")
            stderr.flush()

    with open_outbox(settings) as outbox:
        if not args.follow:
            try:
                show(client.sync_once(outbox, drift=spool))
            except SyncError as exc:
                show(exc)
            return 1 if failed else 0
        stopping = stop_after_round_on_sigterm()
        try:
            client.follow(
                outbox,
                drift=spool,
                interval=settings.sync_interval_s,
                drift_interval=settings.drift_interval_s,
                stop=stopping.is_set,
                pause=stopping.wait,
                on_report=show,
            )
        except KeyboardInterrupt:
            pass
    return 0


def run_update(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    settings = settings_from(args)
    updater = ModelUpdater(head_office_from(args, settings), public_key=settings.public_key, models_dir=args.models_dir)
    if getattr(args, "follow", False) and not args.rollback:
        import threading

        from edge_runtime.model_watch import ModelWatcher

        watcher = ModelWatcher(
            updater, poll_interval_s=args.poll_interval, long_poll_s=args.long_poll, jitter_s=args.jitter
        )
        try:
            watcher.run(threading.Event(), lambda r: stdout.write(json.dumps(r.to_dict()) + "\n") and stdout.flush())
        except KeyboardInterrupt:
            return 0
        return 0
    try:
        report = updater.rollback() if args.rollback else updater.update()
    except (SyncError, ModelLoadError) as exc:
        stderr.write(f"edge-runtime update: failed: {exc}\n")
        return 1
    stdout.write(json.dumps(report.to_dict()) + "\n")
    return 1 if report.status == "refused" else 0
