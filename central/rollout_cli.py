"""``edgeseg-central rollout``: staged rollouts by hand or from cron (``central.services.rollouts``).

    edgeseg-central rollout start retail-tier/20261201T000000Z --canary store-3,store-8 \\
        [--canary-fraction 0.1] --watch 7d --rollback-order o3.json --rollback-order o8.json
    edgeseg-central rollout evaluate [--now 2026-12-08T00:00:00]    # cron, or the serve scheduler
    edgeseg-central rollout show [--json]                            # rollouts and their timelines
    edgeseg-central rollout pause|resume|promote|rollback ID [--reason TEXT]

The rollback orders are signed by the factory (``edgeseg-factory rollback-order --from
CHALLENGER --to CHAMPION``), one per canary store: central verifies them at start and uses them
when the canary must go back; it never holds the factory's key. ``--actor`` (default: $USER)
is who the audit events name.
"""

from __future__ import annotations

import argparse
import getpass
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from central.core.config import Settings

__all__ = ["add_rollout_parser", "run_rollout", "timeline_lines"]


def add_rollout_parser(commands: Any) -> None:
    rollout = commands.add_parser("rollout", help="staged rollouts: canary, watch, promote or roll back")
    sub = rollout.add_subparsers(dest="rollout_command", required=True)
    start = sub.add_parser("start", help="put a registered model on canary stores and watch it")
    start.add_argument("model_version", metavar="NAME/VERSION")
    start.add_argument("--canary", default="", help="comma-separated canary stores")
    start.add_argument("--canary-fraction", type=float, default=0.0, help="plus this share of the other stores")
    start.add_argument("--watch", default="7d", help="watch window before promotion (7d, 12h, 3600)")
    start.add_argument(
        "--rollback-order", action="append", default=[], type=Path, help="a signed order (one per canary store)"
    )
    start.add_argument("--min-outcomes", type=int, default=50, help="outcomes each side needs before a verdict")
    start.add_argument("--tolerance", type=float, default=0.02, help="how much worse the canary may be")
    start.add_argument("--force", action="store_true", help="start even though the promotion gate said no")
    evaluate = sub.add_parser("evaluate", help="evaluate active rollouts now (cron)")
    evaluate.add_argument("--now", default=None, help="the clock, ISO UTC (default: now)")
    show = sub.add_parser("show", help="rollouts and their timelines")
    show.add_argument("--json", action="store_true")
    for name in ("pause", "resume", "promote", "rollback"):
        hand = sub.add_parser(name, help=f"{name} a staged rollout by hand")
        hand.add_argument("rollout_id", type=int, metavar="ID")
        hand.add_argument("--reason", default="")
    for parser in sub.choices.values():
        parser.add_argument("--actor", default=None, help="who the audit events name (default: $USER)")


def timeline_lines(rollouts: list[Any]) -> list[str]:
    """Each rollout's header and its events, oldest first, one line each."""
    lines = []
    for r in rollouts:
        lines.append(
            f"rollout {r.id}: {r.model_version} (champion {r.champion_version}) canary {', '.join(r.canary_stores)}"
            f" — {r.state}"
        )
        for e in r.events:
            lines.append(f"  {e.at:%Y-%m-%d %H:%M} {e.action:<11} by {e.actor}: {e.reason}")
    return lines


def _public(rollout: Any) -> dict[str, Any]:
    from central.schemas_rollouts import StagedRolloutPublic

    return StagedRolloutPublic.model_validate(rollout, from_attributes=True).model_dump(mode="json")


def run_rollout(args: argparse.Namespace, settings: Settings, database: Any, refused: Any) -> int:
    """Run one ``rollout`` command; ``refused(reason)`` prints and returns exit status 1."""
    from pydantic import ValidationError

    from central.services import rollouts
    from central.services.errors import ServiceError

    actor = args.actor or getpass.getuser()
    keys: dict[str, Any] = {
        "public_key_path": settings.public_key_path,
        "max_future_skew_s": settings.max_future_skew_s,
    }
    with database.sessionmaker() as session:
        try:
            command = args.rollout_command
            if command == "start":
                orders = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.rollback_order]
                rollout = rollouts.start_rollout(
                    session, args.model_version, canary=[s for s in args.canary.split(",") if s],
                    canary_fraction=args.canary_fraction, watch_s=rollouts.parse_duration(args.watch),
                    rollback_orders=orders, public_key_path=settings.public_key_path, actor=actor,
                    min_outcomes=args.min_outcomes, tolerance=args.tolerance, force=args.force,
                )  # fmt: skip
                print(f"rollout {rollout.id}: {rollout.model_version} on {', '.join(rollout.canary_stores)}")
                return 0
            if command == "evaluate":
                now = None if args.now is None else datetime.fromisoformat(args.now).replace(tzinfo=None)
                done = rollouts.evaluate_rollouts(
                    session, now=now, drift_threshold=settings.drift_psi_threshold, actor=actor, **keys
                )
                for r in done:
                    print(f"rollout {r.id}: {r.state} — {r.events[-1].reason if r.events else ''}")
                return 0
            if command == "show":
                found = rollouts.list_rollouts(session)
                if args.json:
                    print(json.dumps([_public(r) for r in found], indent=2))
                else:
                    print("\n".join(timeline_lines(found)) or "no staged rollouts")
                return 0
            hand = {
                "pause": rollouts.pause,
                "resume": rollouts.resume,
                "promote": rollouts.promote,
            }
            if command == "rollback":
                rollout = rollouts.roll_back(session, args.rollout_id, actor=actor, reason=args.reason, **keys)
            else:
                rollout = hand[command](session, args.rollout_id, actor=actor, reason=args.reason)
            print(f"rollout {rollout.id}: {rollout.state}")
            return 0
        except (ServiceError, ValidationError, OSError, ValueError) as exc:
            return int(refused(exc))
