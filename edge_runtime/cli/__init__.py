"""``edge-runtime``: classify files or stdin, serve a loopback endpoint, verify, calibrate, and
talk to head office (``sync [--follow]``, ``update``).

Settings come from ``edge_runtime._settings`` (config file, then ``EDGESEG_*`` variables);
flags override them. Each command module (``_device``: this device alone; ``_head_office``:
sync and update) adds its subparsers with a ``handler(args, stdout, stderr) -> int``; this
module parses, dispatches and turns errors into exit codes: 0 success; 1 some input lines
failed, an artifact was refused, head office failed or the outbox could not be read; 2 bad usage
or configuration. No command ends in a traceback for a damaged outbox.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from collections.abc import Sequence

from edge_runtime.cli import _device, _head_office, _inspect, _outbox
from edge_runtime.cli._common import Handler, UsageError
from edge_runtime.exceptions import EdgeRuntimeError, ModelLoadError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-runtime",
        description="Classify customers on this device with a signed edgeseg model.",
        epilog="Secrets are read from the environment, never flags (flags show up in process "
        "lists): EDGESEG_SECRET pseudonymises customer ids, EDGESEG_DEVICE_TOKEN authenticates "
        "this device at head office.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _device.register(sub)
    _head_office.register(sub)
    _inspect.register(sub)
    _outbox.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="edge-runtime: %(levelname)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args, sys.stdout, sys.stderr)
    except UsageError as exc:
        sys.stderr.write(f"edge-runtime {args.command}: {exc}\n")
        return 2
    except ModelLoadError as exc:
        sys.stderr.write(f"edge-runtime {args.command}: model refused: {exc}\n")
        return 1
    except EdgeRuntimeError as exc:
        sys.stderr.write(f"edge-runtime {args.command}: {exc}\n")
        return 1
    except sqlite3.Error as exc:  # damaged after it was opened: the next open quarantines it
        sys.stderr.write(
            f"edge-runtime {args.command}: outbox error: {type(exc).__name__}: {exc} (a corrupt outbox is moved "
            "aside and replaced the next time it is opened)\n"
        )
        return 1
