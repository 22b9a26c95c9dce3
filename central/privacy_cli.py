"""``edgeseg-central customer erase`` and ``edgeseg-central privacy export`` (issue 15).

    edgeseg-central customer erase REF_OR_ID [--raw]
    edgeseg-central privacy export --model-version NAME/VERSION [--out FILE]

``customer erase`` takes a customer ref (the pseudonym devices store: 16-64 hex digits); a raw
customer id only when head office holds the deployment secret (``EDGESEG_PSEUDONYM_SECRET``,
the ``EDGESEG_SECRET`` of the tills) -- ``--raw`` forces reading the value as a raw id. It
prints the audit record's id and counts, never the ref. ``privacy export`` writes the federated
statistics (``central.services.privacy.federated_statistics``) as JSON for a retrain.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_commands", "run"]


def add_commands(commands: Any) -> None:
    """Add the ``customer`` and ``privacy`` sub-commands to ``edgeseg-central``'s parser."""
    customer = commands.add_parser("customer", help="erase a customer (right to erasure)").add_subparsers(
        dest="customer_command", required=True
    )
    erase = customer.add_parser("erase", help="delete a customer's data at central and on every device")
    erase.add_argument("value", metavar="REF_OR_ID", help="the customer ref, or a raw id (needs the secret)")
    erase.add_argument("--raw", action="store_true", help="read the value as a raw customer id")
    privacy = commands.add_parser("privacy", help="privacy-safe statistics").add_subparsers(
        dest="privacy_command", required=True
    )
    export = privacy.add_parser("export", help="federated per-input histograms from noised device reports")
    export.add_argument("--model-version", required=True, metavar="NAME/VERSION")
    export.add_argument("--out", type=Path, default=None, help="write JSON here (default: stdout)")


def run(args: argparse.Namespace, settings: Any) -> int:
    """Run a ``customer`` or ``privacy`` command; 0 done, 1 refused."""
    from central.cli import _database, _refused
    from central.services import privacy
    from central.services.errors import ServiceError

    db = _database(settings)
    try:
        with db.sessionmaker() as session:
            try:
                if args.command == "customer":
                    ref = privacy.resolve_customer_ref(args.value, raw=args.raw, secret=settings.pseudonym_secret)
                    erasure = privacy.erase_customer(session, ref)
                    print(
                        f"erasure {erasure.id} recorded: {erasure.results_deleted} results and "
                        f"{erasure.outcomes_deleted} outcomes deleted at central; queued for {erasure.devices} "
                        "devices (they erase at their next sync and confirm: GET /v1/erasures)"
                    )
                    return 0
                stats = privacy.federated_statistics(session, args.model_version)
            except ServiceError as exc:
                return _refused(exc)
        text = json.dumps(stats, indent=2, sort_keys=True)
        if args.out is None:
            print(text)
        else:
            args.out.write_text(text + "\n", encoding="utf-8")
            print(f"wrote {args.out} ({len(stats['stores'])} stores)", file=sys.stderr)
        return 0
    finally:
        db.dispose()
