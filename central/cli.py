"""``edgeseg-central``: serve the API, manage devices, publish models, migrate the database.

    edgeseg-central serve [--host 127.0.0.1] [--port 8000] [--workers N]
    edgeseg-central device add --store STORE [--device-id ID | --adopt-outbox OUTBOX] [--json]
    edgeseg-central device revoke ID
    edgeseg-central model publish ARTIFACT_DIR [--store STORE [--create]]
    edgeseg-central model rollback ORDER_JSON [--store STORE]
    edgeseg-central db upgrade
    edgeseg-central partitions ensure [--months-ahead 3]
    edgeseg-central customer erase REF_OR_ID [--raw]
    edgeseg-central privacy export --model-version NAME/VERSION [--out FILE]
    edgeseg-central retention apply --keep-months N

Settings come from the environment (``EDGESEG_DATABASE_URL``, ``EDGESEG_ADMIN_TOKEN``, …, see
``central.core.config``). Without ``EDGESEG_ADMIN_TOKEN`` the first command creates a random one
in ``$EDGESEG_DATA_DIR/admin_token`` (``EDGESEG_ADMIN_TOKEN_FILE``), so ``serve`` needs no set-up and
never runs with a guessable token. Exit codes: 0 success, 1 refused (bad artifact, unknown device),
2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.orm import Session

from central.core.config import Settings, describe_database, ensure_admin_token_file, get_settings
from central.core.db import Database

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeseg-central", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes; central keeps no state between requests, so any number "
        "works on PostgreSQL (each holds EDGESEG_DB_POOL_SIZE connections)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's; 'warning' and above also drop the access log (one line per request)",
    )

    device = commands.add_parser("device", help="register or revoke devices").add_subparsers(
        dest="device_command", required=True
    )
    add = device.add_parser("add", help="register a device; prints its id and token (once)")
    add.add_argument("--store", required=True)
    add.add_argument("--json", action="store_true", help="print {id, store, token} as JSON")
    named = add.add_mutually_exclusive_group()
    named.add_argument("--device-id", help="the id the device already uses (EDGESEG_DEVICE_ID); default: a new d-… id")
    named.add_argument(
        "--adopt-outbox", type=Path, metavar="OUTBOX",
        help="register the id of an outbox the device created before registration (its results then sync as is)",
    )  # fmt: skip
    revoke = device.add_parser("revoke", help="revoke a device's token")
    revoke.add_argument("device_id", metavar="ID")

    store = commands.add_parser("store", help="name stores for people").add_subparsers(
        dest="store_command", required=True
    )
    rename = store.add_parser(
        "rename", help='give a store a display name: the dashboard and CSV show "NAME (STORE)"'
    )  # fmt: skip
    rename.add_argument("store", metavar="STORE", help="the store id devices were registered with (--store)")
    rename.add_argument("display_name", metavar="NAME", help='e.g. "Leeds Briggate"')
    store.add_parser("list", help="every store with its display name")

    model = commands.add_parser("model", help="publish signed artifacts").add_subparsers(
        dest="model_command", required=True
    )
    publish = model.add_parser("publish", help="verify, register and roll out an artifact")
    publish.add_argument("artifact_dir", metavar="ARTIFACT_DIR")
    publish.add_argument("--store", default=None, help="roll out to this store (default: all)")
    publish.add_argument(
        "--create", action="store_true", help="allow a store that has no devices yet (else refused: a typo?)"
    )
    back = model.add_parser("rollback", help="roll back as a signed rollback order says (factory rollback-order)")
    back.add_argument("order", metavar="ORDER_JSON", help="the signed order file")
    back.add_argument("--store", default=None, help="roll this store back (default: every store)")

    from central.rollout_cli import add_rollout_parser

    add_rollout_parser(commands)
    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply Alembic migrations up to head")

    parts = commands.add_parser("partitions", help="monthly partitions of results (PostgreSQL)")
    ensure = parts.add_subparsers(dest="partitions_command", required=True).add_parser(
        "ensure", help="create this month's partition and the next ones (idempotent; run daily)"
    )
    ensure.add_argument("--months-ahead", type=int, default=3)
    retention = commands.add_parser("retention", help="drop old results")
    apply = retention.add_subparsers(dest="retention_command", required=True).add_parser(
        "apply", help="keep the current month and the N-1 before it (PostgreSQL: drops whole partitions)"
    )
    apply.add_argument("--keep-months", type=int, required=True)
    from central.privacy_cli import add_commands as add_privacy_commands  # customer erase, privacy export

    add_privacy_commands(commands)
    return parser


def _database(settings: Settings) -> Database:
    from central.core.migrate import upgrade

    db = Database.from_url(settings.database_url)
    upgrade(db.engine)
    return db


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    """A session on the migrated database, the engine disposed afterwards (one per command)."""
    db = _database(settings)
    try:
        with db.sessionmaker() as session:
            yield session
    finally:
        db.dispose()


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if args.workers > 1:
        # Workers import the factory themselves and read the same environment. Central keeps
        # nothing between requests that a worker could disagree on (tokens, rollouts and
        # partitions are read from the database; ClassCache and the partition cache only
        # remember facts that never change back), except metrics: summed over workers here.
        import os
        import tempfile

        from central.core.metrics import MULTIPROC_ENV

        if not os.environ.get(MULTIPROC_ENV):
            os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="edgeseg-metrics-")
        uvicorn.run(
            "central.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
        )
        return 0
    from central.main import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _refused(reason: object) -> int:
    """Exit code 1 with the reason on stderr: central refused (unknown device, bad artifact)."""
    print(f"edgeseg-central: {reason}", file=sys.stderr)
    return 1


def _outbox_device_id(path: Path) -> str:
    """The device id an edge outbox file was created with (read only; ValueError naming the file)."""
    import sqlite3

    if not path.is_file():
        raise ValueError(f"no outbox at {str(path)!r}")
    try:
        with sqlite3.connect(f"file:{path.absolute()}?mode=ro", uri=True) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'device_id'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{str(path)!r} is not an edgeseg outbox ({exc})") from exc
    if row is None:
        raise ValueError(f"{str(path)!r} has no device id (not an edgeseg outbox)")
    return str(row[0])


def _device(args: argparse.Namespace, settings: Settings) -> int:
    from central.services import devices
    from central.services.errors import ServiceError

    with _session(settings) as session:
        if args.device_command == "add":
            try:
                wanted = args.device_id if args.adopt_outbox is None else _outbox_device_id(args.adopt_outbox)
                device, token = devices.create_device(session, args.store, wanted)
            except (ServiceError, ValueError) as exc:
                return _refused(exc)
            if args.json:
                print(json.dumps({"id": device.id, "store": device.store, "token": token}))
            else:
                print(f"device id: {device.id}")
                print(f"store:     {device.store}")
                print(f"token:     {token}")
                print("The token is shown once; central keeps only its hash.")
            return 0
        try:
            device = devices.revoke_device(session, args.device_id)
        except LookupError as exc:
            return _refused(exc.args[0])
        print(f"revoked {device.id} (store {device.store})")
        return 0


def _store(args: argparse.Namespace, settings: Settings) -> int:
    from central.services import devices, stores
    from central.services.errors import ServiceError

    with _session(settings) as session:
        if args.store_command == "rename":
            try:
                row = stores.rename_store(session, args.store, args.display_name)
            except ServiceError as exc:
                return _refused(exc.detail)
            print(f"store {row.store} is now shown as {stores.label(row.store, {row.store: row.display_name})}")
            return 0
        names = stores.display_names(session)
        for store in sorted({d.store for d in devices.list_devices(session)}):
            print(f"{store}\t{names.get(store, '')}")
        return 0


def _model(args: argparse.Namespace, settings: Settings) -> int:
    from central.schemas import RollbackOrder
    from central.services.errors import ServiceError
    from central.services.models import register_artifact_dir, rollback

    target = f"store {args.store}" if args.store else "all stores"
    with _session(settings) as session:
        try:
            if args.model_command == "rollback":
                order = RollbackOrder.model_validate_json(Path(args.order).read_bytes())
                entry = rollback(
                    session,
                    order,
                    args.store,
                    public_key_path=settings.public_key_path,
                    max_future_skew_s=settings.max_future_skew_s,
                )
                print(f"rolled {target} back from {order.from_version} to {entry.model_version}")
                return 0
            model = register_artifact_dir(
                session,
                args.artifact_dir,
                settings.public_key_path,
                rollout_to=args.store or "all",
                create_store=args.create,
            )
        except (ServiceError, ValidationError, OSError) as exc:
            return _refused(exc)
        print(f"published {model.model_version} ({', '.join(model.classes)}) to {target}")
        return 0


def _partitions(args: argparse.Namespace, settings: Settings) -> int:
    from central.core import partitions

    db = _database(settings)
    try:
        if args.command == "partitions":
            if args.months_ahead < 0:
                print(f"edgeseg-central: --months-ahead must be >= 0, got {args.months_ahead}", file=sys.stderr)
                return 2
            created = partitions.ensure_ahead(db.engine, args.months_ahead)
            if db.dialect != "postgresql":
                print(f"{db.dialect}: results is not partitioned; nothing to do")
                return 0
            existing = ", ".join(p.name for p in partitions.list_partitions(db.engine))
            print(f"created {len(created)} partition(s){': ' + ', '.join(created) if created else ''}")
            print(f"partitions: {existing}")
            return 0
        if args.keep_months < 1:
            print(f"edgeseg-central: --keep-months must be >= 1, got {args.keep_months}", file=sys.stderr)
            return 2
        report = partitions.apply_retention(db.engine, args.keep_months)
        dropped = ", ".join(report.dropped_partitions) or "none"
        print(
            f"kept results received since {report.horizon.isoformat()}: deleted {report.deleted_results} "
            f"result(s), {report.deleted_keys} key(s) below their watermark; dropped partitions: {dropped}"
        )
        return 0
    finally:
        db.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    created = ensure_admin_token_file()
    if created is not None:
        print(
            f"edgeseg-central: created an admin token in {created} (mode 0600); admin routes and the dashboard need it",
            file=sys.stderr,
        )
    try:
        settings = get_settings()
    except ValidationError as exc:
        messages = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        print(f"edgeseg-central: configuration error: {messages}", file=sys.stderr)
        return 2
    if os.environ.get("EDGESEG_PUBLIC_KEY_PATH"):
        print(
            "edgeseg-central: EDGESEG_PUBLIC_KEY_PATH is deprecated; set EDGESEG_PUBLIC_KEY (the device's name)",
            file=sys.stderr,
        )
    # Every command says which database it uses: a token printed for another file is useless.
    print(f"edgeseg-central: database {describe_database(settings.database_url)}", file=sys.stderr)
    if args.command == "serve":
        return _serve(args, settings)
    if args.command == "device":
        return _device(args, settings)
    if args.command == "store":
        return _store(args, settings)
    if args.command == "model":
        return _model(args, settings)
    if args.command == "rollout":
        from central.rollout_cli import run_rollout

        db = _database(settings)
        try:
            return run_rollout(args, settings, db, _refused)
        finally:
            db.dispose()
    if args.command in ("partitions", "retention"):
        return _partitions(args, settings)
    if args.command in ("customer", "privacy"):
        from central.privacy_cli import run as run_privacy

        return run_privacy(args, settings)
    db = _database(settings)
    db.dispose()
    print("database is at the newest schema")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
