"""The commands that work on this device alone: classify, ingest, serve, status, verify, calibrate."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import sys
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from edge_runtime.cli._common import (
    UsageError,
    add_model_arguments,
    close_runtime,
    load_classifier,
    open_outbox,
    open_runtime,
    settings_from,
    stop_on_sigterm,
)
from edge_runtime.customer_state import EventError, NoRecordError
from edge_runtime.exceptions import ModelLoadError, SchemaError, SignatureError
from edge_runtime.state_snapshot import SnapshotError
from edge_runtime.sync import DriftSpool

if TYPE_CHECKING:
    from edge_runtime.classifier import Classifier
    from edge_runtime.runtime import Runtime

__all__ = ["register"]

logger = logging.getLogger("edge_runtime")

# Longest time ``serve`` keeps drift counts only in memory before spooling them.
DRIFT_SAVE_MAX_S = 60.0


def register(sub: Any) -> None:
    """Add this module's commands to ``edge-runtime``'s subparsers."""
    p = sub.add_parser("classify", help="classify a CSV/JSONL file or stdin to JSONL")
    p.add_argument("input", nargs="?", default="-", help="file, or - for stdin (default)")
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from the extension")
    p.add_argument("--dry-run", action="store_true", help="classify without storing in the outbox (seq null)")
    add_model_arguments(p, runtime=True)
    p.set_defaults(handler=run_classify)

    p = sub.add_parser("ingest", help="apply till events (JSONL) to the customer state; --classify: their segments")
    p.add_argument("input", nargs="?", default="-", help="JSONL file of till events, or - for stdin (default)")
    p.add_argument(
        "--classify", action="store_true", help="then classify every customer of the file (outbox; JSONL to stdout)"
    )
    p.add_argument("--at", help="classify at this ISO 8601 time (default: now)")
    _add_state_argument(p)
    add_model_arguments(p, runtime=True)
    p.set_defaults(handler=run_ingest)

    p = sub.add_parser("bootstrap-state", help="install head office's signed customer-state snapshot for this till")
    p.add_argument("snapshot_dir", type=Path, help="folder with snapshot.json, snapshot.sig, customer_state.sqlite")
    p.add_argument("--replace", action="store_true", help="overwrite a customer state that already holds events")
    _add_state_argument(p)
    add_model_arguments(p, runtime=True)
    p.set_defaults(handler=run_bootstrap_state)

    p = sub.add_parser("serve", help="serve POST /classify, POST /events, GET /health, GET /status")
    p.add_argument("--host", help="loopback address (EDGESEG_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="(EDGESEG_PORT, default 8765)")
    p.add_argument(
        "--drift-interval",
        dest="drift_interval_s",
        type=float,
        help="seconds; drift counts are spooled every min(60, this) (EDGESEG_DRIFT_INTERVAL_S)",
    )
    _add_state_argument(p)
    add_model_arguments(p, runtime=True)
    p.set_defaults(handler=run_serve)

    p = sub.add_parser("status", help="model and outbox state as JSON")
    add_model_arguments(p, runtime=True)
    p.set_defaults(handler=run_status)

    p = sub.add_parser("verify", help="verify signature, hash and golden samples of an artifact")
    p.add_argument("artifact_dir", type=Path)
    p.add_argument("--public-key", type=Path, help="trusted PEM key (EDGESEG_PUBLIC_KEY)")
    p.set_defaults(handler=run_verify)

    p = sub.add_parser("calibrate", help="measure this device and write a device profile")
    p.add_argument("--out", type=Path, required=True, help="profile JSON to write")
    p.add_argument("--reference", type=Path, help="the build machine's calibrate profile")
    p.add_argument("--runs", type=int, default=2000, help="timed runs per graph (default 2000)")
    p.set_defaults(handler=run_calibrate)


def _add_state_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--customer-state", dest="customer_state_path", type=Path,
        help="the till's customer feature state (SQLite; default: beside the outbox)",
    )  # fmt: skip


# ---------------------------------------------------------------------- classify
def _typed_csv_row(row: dict[str | None, Any], number_fields: frozenset[str]) -> dict[str, Any]:
    """CSV cells are text: empty -> missing, number fields parsed (refused if not numbers)."""
    if None in row:  # more cells than header names
        raise SchemaError("<record>", row[None], "has more cells than the header has names")
    record: dict[str, Any] = {}
    for name, text in row.items():
        assert name is not None
        if text is None or text == "":
            record[name] = None
        elif name in number_fields:
            try:
                record[name] = float(text)
            except ValueError:
                raise SchemaError(name, text, "must be a number") from None
        else:
            record[name] = text
    return record


def _records(stream: Iterable[str], fmt: str, number_fields: frozenset[str]) -> Iterator[tuple[int, Any]]:
    """(line number, record or the exception that made the line unreadable)."""
    if fmt == "jsonl":
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:  # its own "line 1" is the record's, not the file's
                yield number, ValueError(f"invalid JSON: {exc.msg} (column {exc.pos + 1})")
            except ValueError as exc:
                yield number, ValueError(f"invalid JSON: {exc}")
        return
    reader = csv.DictReader(stream)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, ValueError(f"invalid CSV: {exc}")
            continue
        try:
            yield reader.line_num, _typed_csv_row(row, number_fields)
        except SchemaError as exc:
            yield reader.line_num, exc


def _format_of(path: str, explicit: str | None, head: str) -> str:
    if explicit:
        return explicit
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "jsonl" if head.lstrip().startswith("{") else "csv"


def run_classify(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    settings = settings_from(args)
    runtime = None if args.dry_run else open_runtime(settings)
    classifier = load_classifier(settings) if runtime is None else runtime.classifier
    target: Classifier | Runtime = classifier if runtime is None else runtime
    number_fields = frozenset(classifier.validator.num_names)
    if args.input == "-":
        stream: TextIO = sys.stdin
    else:
        try:
            stream = open(args.input, encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            if runtime is not None:
                runtime.close()
            raise UsageError(f"cannot read {args.input!r}: {exc.strerror}") from exc
    failed = classified = 0
    try:
        first = stream.readline()  # sniff the format from the first line, then stream on
        fmt = _format_of(args.input, args.format, first)
        lines = itertools.chain([first], stream)
        for number, record in _records(lines, fmt, number_fields):
            if isinstance(record, Exception):
                failed += 1
                stderr.write(f"line {number}: {record}\n")
                continue
            try:
                result = target.classify(record)
            except SchemaError as exc:
                failed += 1
                stderr.write(f"line {number}: {exc}\n")
                continue
            stdout.write(json.dumps({"line": number, **result.to_dict()}) + "\n")
            classified += 1
        logger.info("classified %d, failed %d; input stats %s", classified, failed, classifier.input_stats)
    finally:
        if stream is not sys.stdin:
            stream.close()
        if runtime is not None:
            close_runtime(runtime, settings)
    return 1 if failed else 0


# ---------------------------------------------------------------------- ingest
def run_ingest(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Apply a file of till events in order, one transaction each; a refused line is named on
    stderr (line number, field, rule) and changes nothing. Prints the counts as JSON (after the
    segments with ``--classify``); exit 1 when a line was refused."""
    if args.at is not None:
        try:
            datetime.fromisoformat(args.at)
        except ValueError as exc:
            raise UsageError(f"--at must be an ISO 8601 time, got {args.at!r}") from exc
    settings = settings_from(args)
    runtime = open_runtime(settings, args.customer_state_path)
    try:
        stream: TextIO = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        runtime.close()
        raise UsageError(f"cannot read {args.input!r}: {exc.strerror}") from exc
    counts = dict.fromkeys(("events", "applied", "duplicate", "refused", "lines_applied", "lines_duplicate"), 0)
    customers: dict[str, None] = {}  # raw ids in first-seen order (only printed locally, never stored)
    try:
        try:  # a model without a feature program, or a state of another program, before any line
            runtime.customer_state  # noqa: B018
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            counts["events"] += 1
            try:
                event = json.loads(line)
                observed = runtime.observe(event)
            except (ValueError, EventError) as exc:  # EventError is a ValueError: it names the field
                counts["refused"] += 1
                stderr.write(f"line {number}: {exc if isinstance(exc, EventError) else f'invalid JSON: {exc}'}\n")
                continue
            counts["applied" if observed.applied else "duplicate"] += 1
            counts["lines_applied"] += observed.applied
            counts["lines_duplicate"] += observed.duplicates
            customers[str(event["customer_id"]).strip()] = None
        if args.classify:
            counts["classified"] = counts["no_record"] = 0
            for customer_id in customers:
                try:
                    out = runtime.classify_customer(customer_id, args.at)
                except NoRecordError:
                    counts["no_record"] += 1  # seen only through returns: no input record yet
                    continue
                stdout.write(json.dumps({"customer_id": customer_id, **out.to_dict()}) + "\n")
                counts["classified"] += 1
    finally:
        if stream is not sys.stdin:
            stream.close()
        close_runtime(runtime, settings)
    stdout.write(json.dumps(counts) + "\n")
    return 1 if counts["refused"] else 0


def run_bootstrap_state(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Verify (signature, state sha256, program, deployment secret) and install a snapshot."""
    settings = settings_from(args)
    runtime = open_runtime(settings, args.customer_state_path)
    try:
        try:
            info = runtime.bootstrap_customer_state(args.snapshot_dir, settings.public_key, replace=args.replace)
        except SignatureError as exc:  # not "model refused": it is the snapshot that failed
            raise SnapshotError(f"snapshot refused: {exc}") from exc
        stdout.write(json.dumps({"installed": str(runtime.customer_state_path), **info.to_dict()}) + "\n")
    finally:
        runtime.close()
    return 0


# ---------------------------------------------------------------------- other commands
def run_serve(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from edge_runtime._http import make_server

    settings = settings_from(args)
    runtime = open_runtime(settings, args.customer_state_path)
    try:
        server = make_server(runtime, settings.host, settings.port, allowed_origins=settings.serve_allowed_origins)
    except (ValueError, OSError) as exc:
        runtime.close()
        raise UsageError(str(exc)) from exc
    host, port = str(server.server_address[0]), server.server_address[1]
    stop_on_sigterm()
    # The drift counts go to the spool every minute (sooner with a short drift interval), so
    # `sync` in another process can send them and a crash loses at most that much.
    spool, stopped = DriftSpool.for_outbox(settings.outbox), threading.Event()
    period = min(DRIFT_SAVE_MAX_S, settings.drift_interval_s)
    saver = threading.Thread(
        target=spool.save_every, args=(lambda: runtime.drift_snapshot(reset=True), period, stopped), daemon=True
    )
    saver.start()
    stderr.write(f"edge-runtime serving {runtime.model_version} on http://{host}:{port}\n")
    stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        stopped.set()
        saver.join()
        close_runtime(runtime, settings)
    return 0


def run_status(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    settings = settings_from(args)
    status: dict[str, Any] = {
        "device_id": settings.device_id, "model": None, "outbox": None, "inputs": None, "inputs_by_model": {},
    }  # fmt: skip
    if settings.artifact is not None:
        try:
            classifier = load_classifier(settings)
            status["model"] = {
                "model_version": classifier.model_version,
                "artifact_dir": str(settings.artifact),
                "classes": list(classifier.classes),
            }
        except ModelLoadError as exc:
            status["model"] = {"artifact_dir": str(settings.artifact), "refused": str(exc)}
    if settings.outbox.exists():
        with open_outbox(settings) as box:
            status["outbox"] = box.status()
            # what validation counted in every process that wrote this outbox (serve, classify,
            # ingest), as of their last checkpoint: missing/unknown/out-of-range inputs, refusals
            status["inputs_by_model"] = box.input_stats()
        model = status["model"] or {}
        status["inputs"] = status["inputs_by_model"].get(str(model.get("model_version")))
    stdout.write(json.dumps(status, indent=2) + "\n")
    return 0


def run_verify(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from edge_runtime.classifier import Classifier

    settings = settings_from(args)
    try:
        classifier = Classifier.load(args.artifact_dir, settings.public_key)
    except ModelLoadError as exc:
        stderr.write(f"refused: {type(exc).__name__}: {exc}\n")
        return 1
    manifest = classifier.manifest
    stdout.write(
        json.dumps(
            {
                "ok": True,
                "model_version": classifier.model_version,
                "classes": list(classifier.classes),
                "golden_samples": len(manifest.golden_samples),
                "onnx_sha256": manifest.onnx_sha256,
                "key_id": None if manifest.signing is None else manifest.signing.key_id,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


def run_calibrate(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from edge_runtime.calibrate import calibrate

    reference = None
    source = "built-in build machine numbers"
    if args.reference is not None:
        try:
            reference = json.loads(args.reference.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read reference profile {str(args.reference)!r}: {exc}") from exc
        source = str(args.reference)
    settings = settings_from(args)
    try:
        profile = calibrate(
            runs=args.runs, reference=reference, reference_source=source,
            device_id=settings.device_id,
        )  # fmt: skip
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(profile, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    summary = {k: v["p50_us"] for k, v in profile["measurements"].items()}
    stdout.write(json.dumps({"out": str(args.out), "scale": profile["scale"], "p50_us": summary}))
    stdout.write("\n")
    return 0
