"""Staged rollouts: canary stores first, watched against the champion stores, then promoted to
every store or rolled back automatically (issue 12, docs/DESIGN.md §8).

    start      the challenger goes to the canary stores (explicit, plus a fraction of the other
               stores picked by a hash of the model version, so a restart picks the same ones)
    evaluate   run by central's scheduler (``edgeseg-central serve`` every EDGESEG_ROLLOUT_EVALUATE_S)
               or by ``edgeseg-central rollout evaluate`` from cron, with the clock given:
               - a canary device refused the model                       -> roll back
               - a canary device's drift report is flagged (PSI above the threshold) while the
                 champion stores' reports since the start are not        -> roll back
               - both sides have ``min_outcomes`` outcomes and the canary's accuracy or macro
                 recall is below the champion stores' by more than ``tolerance`` -> roll back
               - the watch window is over and the canary is at least as good     -> promote to all
               - otherwise: keep watching (the numbers go into the event)
    pause / resume / promote / rollback   an operator's hand

Comparison "over the same days": canary results are the challenger's on canary stores; champion
results are the champion's on the other stores, classified between the first and the last canary
result (device clocks on both sides). Outcomes join results on ``customer_ref``.

Rolling back needs the factory's signature (devices install older versions only with a signed
order), and central never holds the factory's private key: the operator pre-signs one order per
canary store (``edgeseg-factory rollback-order --from CHALLENGER --to CHAMPION``) and hands them
to ``start``, which verifies each one then. Every step is a ``RolloutEvent`` (who, what, when,
why, numbers), which the dashboard shows as a timeline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from central.models import (
    Device,
    DriftReport,
    Model,
    ModelReport,
    Outcome,
    Result,
    Rollout,
    RolloutEvent,
    StagedRollout,
    utc_now,
)
from central.schemas import RollbackOrder
from central.services import models as model_service
from central.services.errors import Conflict, NotFound, Rejected, Unavailable
from edge_runtime.exceptions import SignatureError
from edge_runtime.signing import load_public_key

__all__ = [
    "ACTIVE",
    "SideStats",
    "evaluate_rollouts",
    "list_rollouts",
    "parse_duration",
    "pause",
    "promote",
    "resume",
    "roll_back",
    "start_rollout",
]

ACTIVE = ("canary", "paused")
DEFAULT_MIN_OUTCOMES = 50
DEFAULT_TOLERANCE = 0.02
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``"7d"``, ``"12h"``, ``"90m"``, ``"30s"`` or plain seconds -> seconds."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], None)
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise Rejected(f"--watch {text!r} is not a duration like 7d, 12h, 90m or 3600") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise Rejected(f"--watch {text!r} must be a duration >= 0")
    return seconds


def _event(
    session: Session, rollout: StagedRollout, *, at: datetime, actor: str, action: str, reason: str, **details: Any
) -> RolloutEvent:
    entry = RolloutEvent(
        rollout_id=rollout.id, at=at, actor=actor[:128], action=action, reason=reason[:2000], details=details
    )
    session.add(entry)
    session.flush()
    return entry


def _stores_with_devices(session: Session) -> list[str]:
    return sorted(set(session.scalars(select(Device.store).where(Device.revoked_at.is_(None)))))


def _pick_fraction(model_version: str, stores: Sequence[str], fraction: float) -> list[str]:
    """``ceil(fraction * len(stores))`` stores, chosen by a hash of version and store name."""
    if fraction <= 0 or not stores:
        return []
    ranked = sorted(stores, key=lambda s: hashlib.sha256(f"{model_version}|{s}".encode()).hexdigest())
    return ranked[: math.ceil(fraction * len(stores))]


def _verify_order(order: Mapping[str, Any], public_key_path: Path, *, challenger: str, champion: str) -> dict[str, Any]:
    """A pre-signed order from ``challenger`` to ``champion``, verified with central's trusted key."""
    parsed = RollbackOrder.model_validate(order)
    try:
        key = load_public_key(public_key_path)
    except SignatureError as exc:
        raise Unavailable(f"central has no usable trusted public key: {exc}") from exc
    document = parsed.model_dump()
    try:
        key.verify(base64.b64decode(parsed.signature, validate=True), model_service.rollback_order_bytes(document))
    except (InvalidSignature, binascii.Error, ValueError):
        raise Rejected(f"rollback order {parsed.order_id}: the signature does not verify with central's key") from None
    if (parsed.from_version, parsed.to_version) != (challenger, champion):
        raise Rejected(
            f"rollback order {parsed.order_id} goes from {parsed.from_version} to {parsed.to_version}; this rollout "
            f"needs orders from {challenger} to {champion} (edgeseg-factory rollback-order --from {challenger} "
            f"--to {champion})"
        )
    return document


def start_rollout(
    session: Session,
    model_version: str,
    *,
    canary: Sequence[str] = (),
    canary_fraction: float = 0.0,
    watch_s: float,
    rollback_orders: Sequence[Mapping[str, Any]],
    public_key_path: Path,
    actor: str,
    now: datetime | None = None,
    min_outcomes: int = DEFAULT_MIN_OUTCOMES,
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
) -> StagedRollout:
    """Put ``model_version`` on the canary stores and start watching it; commits.

    Refused (Rejected/Conflict/NotFound): an unregistered model, one the factory's promotion
    gate kept back (unless ``force``), nothing running on every store to compare with, another
    rollout still active, no canary store, canaries covering every store, or fewer verified
    rollback orders (``model_version`` → champion) than canary stores.
    """
    now = now or utc_now()
    model = session.get(Model, model_version)
    if model is None:
        raise NotFound(f"model {model_version!r} is not registered (edgeseg-central model publish --store none)")
    promotion = (model.manifest or {}).get("promotion") or {}
    if promotion.get("decision") == "keep_champion" and not force:
        raise Rejected(
            f"{model_version}: the factory's promotion gate kept the champion "
            f"({'; '.join(promotion.get('reasons', []))}); --force overrides"
        )
    active = session.scalars(select(StagedRollout).where(StagedRollout.state.in_(ACTIVE))).first()
    if active is not None:
        raise Conflict(f"staged rollout {active.id} of {active.model_version} is still {active.state}")
    entry = model_service._current_rollout(session, None)
    everyone = None if entry is None else session.get(Model, entry.model_version)
    if everyone is None:
        raise Conflict("no model runs on every store: publish a champion to all stores first")
    stores = _stores_with_devices(session)
    unknown = [s for s in canary if s not in stores]
    if unknown:
        raise Rejected(f"canary store {unknown[0]!r} has no devices; stores are: {', '.join(stores) or 'none'}")
    chosen = list(
        dict.fromkeys(
            [*canary, *_pick_fraction(model_version, [s for s in stores if s not in canary], canary_fraction)]
        )
    )
    if not chosen:
        raise Rejected("no canary store: name some with --canary or give --canary-fraction")
    if len(chosen) >= len(stores):
        raise Rejected(f"the canary ({', '.join(chosen)}) is every store: nothing left to compare it with")
    orders = [
        _verify_order(o, public_key_path, challenger=model_version, champion=everyone.model_version)
        for o in rollback_orders
    ]
    if len({o["order_id"] for o in orders}) < len(chosen):
        raise Rejected(
            f"{len(chosen)} canary stores need {len(chosen)} distinct signed rollback orders from {model_version} "
            f"to {everyone.model_version} (one per store; got {len({o['order_id'] for o in orders})})"
        )
    rollout = StagedRollout(
        model_version=model_version,
        champion_version=everyone.model_version,
        canary_stores=chosen,
        state="canary",
        watch_s=float(watch_s),
        min_outcomes=int(min_outcomes),
        tolerance=float(tolerance),
        rollback_orders={store: order for store, order in zip(chosen, orders, strict=False)},
        started_by=actor[:128],
        started_at=now,
        created_at=utc_now(),
    )
    session.add(rollout)
    session.flush()
    for store in chosen:
        model_service._check_rollout(session, model, store, create_store=False)
        model_service._add_rollout(session, model_version, store)
    _event(
        session, rollout, at=now, actor=actor, action="started",
        reason=f"canary {', '.join(chosen)}; watch {watch_s / 86400:g} d; champion {everyone.model_version}",
        canary=chosen, watch_s=watch_s, min_outcomes=min_outcomes, tolerance=tolerance,
        gate=promotion.get("decision"),
    )  # fmt: skip
    session.commit()
    return rollout


# ----------------------------------------------------------------------------- evidence
@dataclass
class SideStats:
    """Outcomes of one side (canary or champion stores): accuracy, recall per class, count."""

    model_version: str
    stores: list[str]
    results: int = 0
    evaluated: int = 0
    accuracy: float | None = None
    recall: dict[str, float] = field(default_factory=dict)
    macro_recall: float | None = None
    first: datetime | None = None
    last: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("first", "last"):
            data[key] = None if data[key] is None else data[key].isoformat()
        return data


def _side(
    session: Session,
    model_version: str,
    stores: Iterable[str],
    *,
    exclude: bool,
    between: tuple[datetime, datetime] | None = None,
) -> SideStats:
    store_list = sorted(stores)
    where = [Result.model_version == model_version]
    where.append(Device.store.not_in(store_list) if exclude else Device.store.in_(store_list))
    if between is not None:
        where += [Result.classified_at >= between[0], Result.classified_at < between[1]]
    stats = SideStats(model_version, store_list)
    count, first, last = session.execute(
        select(func.count(), func.min(Result.classified_at), func.max(Result.classified_at))
        .select_from(Result)
        .join(Device, Device.id == Result.device_id)
        .where(*where)
    ).one()
    stats.results, stats.first, stats.last = int(count), first, last
    pairs = session.execute(
        select(Outcome.actual_segment, Result.segment, func.count())
        .select_from(Result)
        .join(Device, Device.id == Result.device_id)
        .join(Outcome, Outcome.customer_ref == Result.customer_ref)
        .where(*where)
        .group_by(Outcome.actual_segment, Result.segment)
    ).all()
    support = Counter({actual: 0 for actual, _, _ in pairs})
    hits = support.copy()
    for actual, predicted, n in pairs:
        support.update({actual: int(n)})
        hits.update({actual: int(n) * (actual == predicted)})
    stats.evaluated = sum(support.values())
    if stats.evaluated:
        stats.accuracy = sum(hits.values()) / stats.evaluated
        stats.recall = {seg: hits[seg] / n for seg, n in sorted(support.items())}
        stats.macro_recall = sum(stats.recall.values()) / len(stats.recall)
    return stats


def _canary_devices(session: Session, stores: Sequence[str]) -> list[str]:
    return list(session.scalars(select(Device.id).where(Device.store.in_(stores))))


def _refusals(session: Session, rollout: StagedRollout) -> list[ModelReport]:
    query = select(ModelReport).where(
        ModelReport.model_version == rollout.model_version,
        ModelReport.status == "refused",
        ModelReport.device_id.in_(_canary_devices(session, rollout.canary_stores)),
        ModelReport.created_at >= rollout.created_at,
    )
    return list(session.scalars(query))


def _drift(session: Session, rollout: StagedRollout, threshold: float) -> dict[str, Any]:
    """Newest PSI per device since the start: canary devices on the challenger, others on the champion."""
    canary_devices = set(_canary_devices(session, rollout.canary_stores))
    reports = session.scalars(
        select(DriftReport)
        .where(
            DriftReport.created_at >= rollout.created_at,
            DriftReport.model_version.in_([rollout.model_version, rollout.champion_version]),
        )
        .order_by(DriftReport.id)
    )
    newest: dict[str, DriftReport] = {}
    for report in reports:
        newest[report.device_id] = report
    canary = {
        d: r.max_psi for d, r in newest.items() if d in canary_devices and r.model_version == rollout.model_version
    }
    champion = {
        d: r.max_psi
        for d, r in newest.items()
        if d not in canary_devices and r.model_version == rollout.champion_version
    }
    return {
        "threshold": threshold,
        "canary_max_psi": canary,
        "champion_max_psi": champion,
        "canary_flagged": sorted(d for d, v in canary.items() if v > threshold),
        "champion_flagged": sorted(d for d, v in champion.items() if v > threshold),
    }


def _verdict(rollout: StagedRollout, canary: SideStats, champion: SideStats) -> tuple[str, str]:
    """("rollback" | "promote" | "wait", why) from the outcomes alone."""
    need = rollout.min_outcomes
    if canary.evaluated < need or champion.evaluated < need:
        return "wait", (
            f"not enough outcomes yet: canary {canary.evaluated}, "
            f"champion stores {champion.evaluated} (need {need} each)"
        )
    assert canary.accuracy is not None and champion.accuracy is not None
    assert canary.macro_recall is not None and champion.macro_recall is not None
    tol = rollout.tolerance
    numbers = (
        f"canary accuracy {canary.accuracy:.4f} / macro recall {canary.macro_recall:.4f} "
        f"on {canary.evaluated} outcomes "
        f"vs champion stores {champion.accuracy:.4f} / {champion.macro_recall:.4f} on {champion.evaluated}"
    )
    if canary.accuracy < champion.accuracy - tol or canary.macro_recall < champion.macro_recall - tol:
        return "rollback", f"canary worse than the champion stores by more than {tol:g}: {numbers}"
    return "promote", f"canary at least as good (tolerance {tol:g}): {numbers}"


def evaluate_rollouts(
    session: Session,
    *,
    now: datetime | None = None,
    drift_threshold: float,
    public_key_path: Path,
    max_future_skew_s: float,
    actor: str = "central scheduler",
) -> list[StagedRollout]:
    """Evaluate every rollout in the canary state (see the module docstring); returns them."""
    now = now or utc_now()
    decided = []
    for rollout in session.scalars(select(StagedRollout).where(StagedRollout.state == "canary")).all():
        canary = _side(session, rollout.model_version, rollout.canary_stores, exclude=False)
        window = None
        if canary.first is not None and canary.last is not None:  # the same days, as UTC calendar days
            day = canary.first.replace(hour=0, minute=0, second=0, microsecond=0)
            window = (day, canary.last.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1))
        champion = _side(session, rollout.champion_version, rollout.canary_stores, exclude=True, between=window)
        drift = _drift(session, rollout, drift_threshold)
        refused = _refusals(session, rollout)
        evidence = {"canary": canary.to_json(), "champion": champion.to_json(), "drift": drift}
        verdict, outcome_why = _verdict(rollout, canary, champion)
        alarms = []  # every reason to go back, so the audit event names them all
        if refused:
            alarms.append(f"{len(refused)} canary device(s) refused {rollout.model_version}: {refused[0].reason[:300]}")
        if drift["canary_flagged"] and not drift["champion_flagged"]:
            worst = max(drift["canary_max_psi"].values())
            alarms.append(
                f"drift on canary devices {', '.join(drift['canary_flagged'])} "
                f"(max PSI {worst:.3f} > {drift_threshold:g}) while the champion stores are not flagged"
            )
        if verdict == "rollback":
            alarms.append(outcome_why)
        if alarms:
            action, why = "rollback", "; ".join(alarms)
        else:
            action, why = verdict, outcome_why
            end = rollout.started_at + timedelta(seconds=rollout.watch_s)
            if action == "promote" and now < end:
                action, why = "wait", f"watch window open until {end:%Y-%m-%d %H:%M}; {why}"
        _event(session, rollout, at=now, actor=actor, action="evaluated", reason=why, verdict=action, **evidence)
        if action == "rollback":
            _roll_back(session, rollout, now=now, actor=actor, reason=why, public_key_path=public_key_path,
                       max_future_skew_s=max_future_skew_s)  # fmt: skip
        elif action == "promote":
            _promote(session, rollout, now=now, actor=actor, reason=why)
        session.commit()
        decided.append(rollout)
    return decided


# ----------------------------------------------------------------------------- decisions
def _get(session: Session, rollout_id: int, *, states: Sequence[str]) -> StagedRollout:
    rollout = session.get(StagedRollout, rollout_id)
    if rollout is None:
        raise NotFound(f"staged rollout {rollout_id} does not exist")
    if rollout.state not in states:
        raise Conflict(f"staged rollout {rollout_id} is {rollout.state}; this needs one that is {' or '.join(states)}")
    return rollout


def _promote(session: Session, rollout: StagedRollout, *, now: datetime, actor: str, reason: str) -> None:
    """Every store to the challenger: a rollout to all, and one per store that has its own rollout
    row (a store-specific row wins over the one to all, so those stores must follow explicitly)."""
    model_service._add_rollout(session, rollout.model_version, None)
    named = sorted({str(s) for s in session.scalars(select(Rollout.store).where(Rollout.store.is_not(None)))})
    for store in named:
        current = model_service.current_model_for_store(session, str(store))
        if current is None or current.model_version != rollout.model_version:
            model_service._add_rollout(session, rollout.model_version, store)
    rollout.state, rollout.decided_at = "promoted", now
    _event(session, rollout, at=now, actor=actor, action="promoted", reason=reason, stores="all")


def _roll_back(
    session: Session,
    rollout: StagedRollout,
    *,
    now: datetime,
    actor: str,
    reason: str,
    public_key_path: Path,
    max_future_skew_s: float,
) -> None:
    """Each canary store back to the champion with its pre-signed order (verified again)."""
    done = []
    for store in rollout.canary_stores:
        order = RollbackOrder.model_validate(rollout.rollback_orders[store])
        model_service.rollback(
            session, order, store, public_key_path=public_key_path, max_future_skew_s=max_future_skew_s
        )
        done.append({"store": store, "order_id": order.order_id})
    rollout.state, rollout.decided_at = "rolled_back", now
    _event(
        session, rollout, at=now, actor=actor, action="rolled_back", reason=reason,
        to=rollout.champion_version, orders=done,
    )  # fmt: skip


def promote(
    session: Session, rollout_id: int, *, actor: str, reason: str = "", now: datetime | None = None
) -> StagedRollout:
    """An operator promotes by hand (from canary or paused); commits."""
    rollout = _get(session, rollout_id, states=ACTIVE)
    _promote(session, rollout, now=now or utc_now(), actor=actor, reason=reason or "promoted by hand")
    session.commit()
    return rollout


def roll_back(
    session: Session,
    rollout_id: int,
    *,
    actor: str,
    public_key_path: Path,
    max_future_skew_s: float,
    reason: str = "",
    now: datetime | None = None,
) -> StagedRollout:
    """An operator rolls the canary back by hand (from canary or paused); commits."""
    rollout = _get(session, rollout_id, states=ACTIVE)
    _roll_back(session, rollout, now=now or utc_now(), actor=actor, reason=reason or "rolled back by hand",
               public_key_path=public_key_path, max_future_skew_s=max_future_skew_s)  # fmt: skip
    session.commit()
    return rollout


def _set_state(
    session: Session, rollout_id: int, *, frm: str, to: str, actor: str, reason: str, now: datetime | None
) -> StagedRollout:
    rollout = _get(session, rollout_id, states=(frm,))
    rollout.state = to
    _event(
        session, rollout, at=now or utc_now(), actor=actor, action=to if to == "paused" else "resumed", reason=reason
    )
    session.commit()
    return rollout


def pause(
    session: Session, rollout_id: int, *, actor: str, reason: str = "", now: datetime | None = None
) -> StagedRollout:
    """Stop automatic decisions (the canary keeps the challenger); commits."""
    return _set_state(
        session, rollout_id, frm="canary", to="paused", actor=actor, reason=reason or "paused by hand", now=now
    )


def resume(
    session: Session, rollout_id: int, *, actor: str, reason: str = "", now: datetime | None = None
) -> StagedRollout:
    """Automatic decisions again; commits."""
    return _set_state(
        session, rollout_id, frm="paused", to="canary", actor=actor, reason=reason or "resumed by hand", now=now
    )


def list_rollouts(session: Session, *, limit: int = 20) -> list[StagedRollout]:
    """The newest staged rollouts with their events, newest first."""
    query = select(StagedRollout).options(selectinload(StagedRollout.events)).order_by(StagedRollout.id.desc())
    return list(session.scalars(query.limit(limit)))
