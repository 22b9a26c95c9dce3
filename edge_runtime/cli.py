"""``edge-runtime``: classify files or stdin, serve a loopback endpoint, verify, calibrate.

Settings come from ``edge_runtime._settings`` (config file, then ``EDGESEG_*`` variables);
flags override them. Exit codes: 0 success; 1 some input lines failed / artifact refused;
2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import itertools
import json
import logging
import signal
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from edge_runtime._settings import DURABILITIES, Settings, get_settings
from edge_runtime.exceptions import EdgeRuntimeError, ModelLoadError, SchemaError

__all__ = ["build_parser", "main"]

logger = logging.getLogger("edge_runtime")

# Subcommands owned by other modules: (module, function adding them to the subparsers). Each
# added subparser sets ``func(args) -> int`` (``sync``: send results; ``update``: pull a model).
_PLUGIN_COMMANDS = (
    ("edge_runtime.sync", "add_sync_commands"),
    ("edge_runtime.updates", "add_update_commands"),
)


class UsageError(Exception):
    """A flag or setting is missing or wrong; printed as one line, exit code 2."""


def _add_common(parser: argparse.ArgumentParser, *, runtime: bool) -> None:
    parser.add_argument("--artifact", type=Path, help="artifact folder (EDGESEG_ARTIFACT)")
    parser.add_argument("--public-key", type=Path, help="trusted PEM key (EDGESEG_PUBLIC_KEY)")
    if runtime:
        parser.add_argument("--outbox", type=Path, help="SQLite outbox path (EDGESEG_OUTBOX)")
        parser.add_argument("--device-id", help="this device's id (EDGESEG_DEVICE_ID)")
        parser.add_argument("--durability", choices=DURABILITIES, help="(EDGESEG_DURABILITY)")
        parser.add_argument("--max-backlog", type=int, help="(EDGESEG_MAX_BACKLOG)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-runtime",
        description="Classify customers on this device with a signed edgeseg model.",
        epilog="The pseudonymisation secret is read from EDGESEG_SECRET (never a flag: flags "
        "show up in process lists).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("classify", help="classify a CSV/JSONL file or stdin to JSONL")
    p.add_argument("input", nargs="?", default="-", help="file, or - for stdin (default)")
    p.add_argument("--format", choices=("csv", "jsonl"), help="default: from the extension")
    p.add_argument("--dry-run", action="store_true", help="classify without storing in the outbox (seq null)")
    _add_common(p, runtime=True)

    p = sub.add_parser("serve", help="serve POST /classify, GET /health, GET /status")
    p.add_argument("--host", help="loopback address (EDGESEG_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="(EDGESEG_PORT, default 8765)")
    _add_common(p, runtime=True)

    p = sub.add_parser("status", help="model and outbox state as JSON")
    _add_common(p, runtime=True)

    p = sub.add_parser("verify", help="verify signature, hash and golden samples of an artifact")
    p.add_argument("artifact_dir", type=Path)
    p.add_argument("--public-key", type=Path, help="trusted PEM key (EDGESEG_PUBLIC_KEY)")

    p = sub.add_parser("calibrate", help="measure this device and write a device profile")
    p.add_argument("--out", type=Path, required=True, help="profile JSON to write")
    p.add_argument("--reference", type=Path, help="the build machine's calibrate profile")
    p.add_argument("--runs", type=int, default=2000, help="timed runs per graph (default 2000)")

    for name, function in _PLUGIN_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        register = getattr(module, function, None)
        if register is not None:
            register(sub)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    try:
        settings = get_settings()
        overrides = {
            key: getattr(args, key, None)
            for key in ("artifact", "public_key", "outbox", "device_id", "durability",
                        "max_backlog", "host", "port")
        }  # fmt: skip
        return settings.updated(**overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _classifier(settings: Settings) -> Any:
    from edge_runtime.classifier import Classifier

    if settings.artifact is None:
        raise UsageError("no model: pass --artifact or set EDGESEG_ARTIFACT")
    return Classifier.load(settings.artifact, settings.public_key)


def _runtime(settings: Settings) -> Any:
    from edge_runtime.runtime import Runtime

    if not settings.secret:
        raise UsageError("EDGESEG_SECRET is not set: the per-deployment secret that pseudonymises customer ids")
    try:
        return Runtime(
            _classifier(settings),
            outbox_path=settings.outbox,
            device_id=settings.device_id,
            secret=settings.secret,
            public_key=settings.public_key,
            durability=settings.durability,
            max_backlog=settings.max_backlog,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


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


def _cmd_classify(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    settings = _settings(args)
    target = _classifier(settings) if args.dry_run else _runtime(settings)
    classifier = target if args.dry_run else target.classifier
    number_fields = frozenset(classifier.validator.num_names)
    if args.input == "-":
        stream: TextIO = sys.stdin
    else:
        try:
            stream = open(args.input, encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            target.close()
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
        if not args.dry_run:
            target.close()
    return 1 if failed else 0


# ---------------------------------------------------------------------- other commands
def _cmd_serve(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from edge_runtime._http import make_server

    settings = _settings(args)
    runtime = _runtime(settings)
    try:
        server = make_server(runtime, settings.host, settings.port)
    except (ValueError, OSError) as exc:
        runtime.close()
        raise UsageError(str(exc)) from exc
    host, port = server.server_address[:2]

    def stop(signum: int, frame: Any) -> None:  # SIGTERM (service managers) = Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    stderr.write(f"edge-runtime serving {runtime.model_version} on http://{host}:{port}\n")
    stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        runtime.close()
    return 0


def _cmd_status(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from edge_runtime.outbox import Outbox

    settings = _settings(args)
    status: dict[str, Any] = {"device_id": settings.device_id, "model": None, "outbox": None}
    if settings.artifact is not None:
        try:
            classifier = _classifier(settings)
            status["model"] = {
                "model_version": classifier.model_version,
                "artifact_dir": str(settings.artifact),
                "classes": list(classifier.classes),
            }
        except ModelLoadError as exc:
            status["model"] = {"artifact_dir": str(settings.artifact), "refused": str(exc)}
    if settings.outbox.exists():
        try:
            with Outbox(settings.outbox, device_id=settings.device_id,
                        max_backlog=settings.max_backlog) as box:  # fmt: skip
                status["outbox"] = box.status()
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
    stdout.write(json.dumps(status, indent=2) + "\n")
    return 0


def _cmd_verify(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from edge_runtime.classifier import Classifier

    settings = _settings(args)
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
                "golden_samples": len(manifest["golden_samples"]),
                "onnx_sha256": manifest.get("onnx_sha256"),
                "key_id": (manifest.get("signing") or {}).get("key_id"),
            },
            indent=2,
        )
        + "\n"
    )
    return 0


def _cmd_calibrate(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from edge_runtime.calibrate import calibrate

    reference = None
    source = "built-in build machine numbers"
    if args.reference is not None:
        try:
            reference = json.loads(args.reference.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read reference profile {str(args.reference)!r}: {exc}") from exc
        source = str(args.reference)
    settings = _settings(args)
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


_COMMANDS = {
    "classify": _cmd_classify,
    "serve": _cmd_serve,
    "status": _cmd_status,
    "verify": _cmd_verify,
    "calibrate": _cmd_calibrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="edge-runtime: %(levelname)s: %(message)s",
    )
    command = _COMMANDS.get(args.command)
    plugin = getattr(args, "func", None)
    if command is None and plugin is None:
        parser.error(f"unknown command {args.command!r}")
    try:
        if command is None:
            return int(plugin(args))
        return int(command(args, sys.stdout, sys.stderr))
    except UsageError as exc:
        sys.stderr.write(f"edge-runtime {args.command}: {exc}\n")
        return 2
    except ModelLoadError as exc:
        sys.stderr.write(f"edge-runtime {args.command}: model refused: {exc}\n")
        return 1
    except EdgeRuntimeError as exc:
        sys.stderr.write(f"edge-runtime {args.command}: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
