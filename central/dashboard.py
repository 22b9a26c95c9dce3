"""The dashboard's view model: plain numbers and SVG geometry the template only prints.

No JavaScript and no CDN: a store network's head office may be offline, and the page must
render from central alone.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy.orm import Session

from central.models import utc_now
from central.services import devices, drift, models, stats, stores

__all__ = ["DashboardView", "build_view"]

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]
CHART_W, CHART_H, PAD = 720, 220, 30
BUCKETS = stats.BUCKETS  # hour, day, week
# Class orders an analyst reads as a scale: the default job's value tiers, low to high
# (factory.features.VALUE_TIERS; central does not import the factory). Other classes keep
# their manifest order after these.
NATURAL_ORDERS = (("lapsed", "low", "mid", "high", "top"),)
_MIN_LABEL_PX = 12  # a mix bar shorter than this carries its share in its tooltip only


def class_order(session: Session, seen: list[str]) -> list[str]:
    """Every class of every registered model (and any other ``seen``), in natural order.

    Zero-count classes stay, so the legend and colours do not change as the mix does.
    """
    ordered: list[str] = []
    for model in reversed(models.list_models(session)):  # oldest first: a class keeps its place
        ordered.extend(c for c in model.classes if c not in ordered)
    ordered.extend(s for s in seen if s not in ordered)
    for natural in NATURAL_ORDERS:
        rank = {name: i for i, name in enumerate(natural)}
        if any(name in rank for name in ordered):
            return sorted(ordered, key=lambda name: (rank.get(name, len(rank)), ordered.index(name)))
    return ordered


def card_url(model_version: str) -> str:
    """Where the dashboard serves a registered model's card."""
    return f"/dashboard/models/{model_version}/card"


@dataclass
class Bar:
    x: float
    y: float
    w: float
    h: float
    color: str
    title: str
    label: str = ""  # the segment's share of the bar, printed inside when it fits


@dataclass
class DashboardView:
    generated_at: str
    devices: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # what devices reported about themselves
    rollouts: list[dict[str, Any]] = field(default_factory=list)  # staged rollouts and their audit timelines
    segments: list[tuple[str, str]] = field(default_factory=list)  # (name, colour)
    mix_bars: list[Bar] = field(default_factory=list)
    mix_days: list[tuple[float, str]] = field(default_factory=list)
    mix_total: int = 0
    store_mix: list[dict[str, Any]] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    accuracy: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.2
    min_customers: int = 1  # small-cell suppression: cells of fewer customers are not shown
    suppressed: int = 0
    filters: dict[str, str] = field(default_factory=dict)  # store, since, until, bucket as asked
    stores: list[str] = field(default_factory=list)  # every store id, for the filter
    store_labels: dict[str, str] = field(default_factory=dict)  # id -> "Leeds Briggate (store-7)" or the id
    mix_rows: list[tuple[str, str, str, int]] = field(default_factory=list)  # bucket, store, segment, count
    store_models: list[dict[str, Any]] = field(default_factory=list)  # which model each store runs
    chart_w: int = CHART_W
    chart_h: int = CHART_H


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{max(seconds, 0)} s ago"


def build_view(
    session: Session,
    *,
    threshold: float,
    days: int = 30,
    min_customers: int = 1,
    store: str | None = None,
    since: str | None = None,
    until: str | None = None,
    bucket: str = "day",
) -> DashboardView:
    """The page's numbers; ``store``, ``since``/``until`` (``YYYY-MM-DD``, inclusive) and
    ``bucket`` (``hour``/``day``/``week``) filter the segment mix (and its CSV export)."""
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {BUCKETS}, got {bucket!r}")
    bounds: dict[str, date] = {}
    for name, value in (("since", since), ("until", until)):
        if value is not None:
            try:
                bounds[name] = datetime.strptime(value, "%Y-%m-%d").date()
            except ValueError:
                raise ValueError(f"{name} must be a date YYYY-MM-DD, got {value!r}") from None
    now = utc_now()
    view = DashboardView(
        generated_at=now.strftime("%Y-%m-%d %H:%M:%S UTC"), threshold=threshold, min_customers=min_customers
    )
    view.filters = {"store": store or "", "since": since or "", "until": until or "", "bucket": bucket}
    if since is not None:
        days = max((now.date() - datetime.strptime(since, "%Y-%m-%d").date()).days + 1, 1)
    names = stores.display_names(session)
    for d in devices.list_devices(session):
        view.devices.append(
            {
                "id": d.id,
                "store": stores.label(d.store, names),
                "last_seen": _ago(d.last_seen_at, now),
                "backlog": "?" if d.backlog is None else d.backlog,
                "model_version": d.model_version or "—",
                "acked_through": d.acked_through,
                "epoch": d.epoch[:8] or "—",
                "results": d.results_count,
                "status": "revoked" if d.revoked_at else "active",
            }
        )

    for e in devices.recent_device_events(session):
        view.events.append(
            {
                "device_id": e.device_id,
                "kind": e.kind,
                "epochs": f"{(e.epoch_old or '—')[:8]} → {(e.epoch_new or '—')[:8]}",
                "detail": e.detail,
                "when": _ago(e.at, now),
            }
        )

    view.stores = sorted({d.store for d in devices.list_devices(session)})
    view.store_labels = {s: stores.label(s, names) for s in view.stores}
    rows, view.suppressed = stats.segment_mix_suppressed(
        session, days=days, store=store, min_customers=min_customers, bucket=bucket,
        since=bounds.get("since"), until=bounds.get("until"),
    )  # fmt: skip
    segments = class_order(session, sorted({r.segment for r in rows}))
    colours = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(segments)}
    view.segments = [(s, colours[s]) for s in segments]
    per_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_store: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    cells: dict[tuple[str, str, str], int] = defaultdict(int)
    for r in rows:
        key = r.day  # the bucket's label, grouped (and suppressed) by the database
        per_day[key][r.segment] += r.count
        per_store[r.store][r.segment] += r.count
        cells[(key, r.store, r.segment)] += r.count
    view.mix_rows = [(b, s, seg, n) for (b, s, seg), n in sorted(cells.items())]
    view.mix_total = sum(r.count for r in rows)
    day_list = sorted(per_day)
    if day_list:
        slot = (CHART_W - 2 * PAD) / len(day_list)
        peak = max(sum(c.values()) for c in per_day.values())
        for i, day in enumerate(day_list):
            x = PAD + i * slot + slot * 0.1
            y: float = CHART_H - PAD
            day_total = sum(per_day[day].values())
            for seg in segments:
                count = per_day[day].get(seg, 0)
                if not count:
                    continue
                h = (CHART_H - 2 * PAD) * count / peak
                y -= h
                share = 100.0 * count / day_total
                view.mix_bars.append(
                    Bar(
                        round(x, 1),
                        round(y, 1),
                        round(slot * 0.8, 1),
                        round(h, 1),
                        colours[seg],
                        f"{day} {seg}: {count} ({share:.0f}%)",
                        f"{share:.0f}%" if h >= _MIN_LABEL_PX else "",
                    )
                )
            view.mix_days.append((round(x + slot * 0.4, 1), day[5:]))
    for store, counts in sorted(per_store.items()):
        total = sum(counts.values())
        view.store_mix.append(
            {
                "store": stores.label(store, names),
                "total": total,
                "shares": [(seg, colours[seg], 100.0 * counts.get(seg, 0) / total) for seg in segments],
            }
        )

    for report in drift.latest_reports(session):
        inputs = sorted(report.psi.items(), key=lambda kv: -kv[1])
        scale = _psi_scale(inputs, threshold)
        view.drift.append(
            {
                "device_id": report.device_id,
                "model_version": report.model_version,
                "rows": report.rows,
                "max_psi": report.max_psi,
                "flagged": [k for k, v in inputs if v > threshold],
                # square-root scale up to this report's largest PSI (at least twice the
                # threshold): bars differ even when every input is past the threshold
                "inputs": [(k, v, 100 * math.sqrt(max(v, 0.0) / scale)) for k, v in inputs[:8]],
                "threshold_at": 100 * math.sqrt(threshold / scale),
                "scale": scale,
                "when": _ago(report.created_at, now),
            }
        )

    acc = stats.accuracy(session, min_customers=min_customers)
    view.accuracy = {
        "evaluated": acc.evaluated,
        "accuracy": acc.accuracy,
        "recall": [  # in the legend's natural order
            (seg, value, acc.support.get(seg, 0), colours.get(seg, PALETTE[0]))
            for seg, value in sorted(acc.recall.items(), key=lambda kv: _position(segments, kv[0]))
        ],
    }
    view.rollouts = _rollouts(session)
    view.store_models = _store_models(session, names)
    return view


def _position(ordered: list[str], name: str) -> int:
    return ordered.index(name) if name in ordered else len(ordered)


def _psi_scale(inputs: list[tuple[str, float]], threshold: float) -> float:
    """The PSI a full-width bar stands for: the largest shown, at least twice the threshold."""
    return max([2 * threshold, *(max(v, 0.0) for _, v in inputs)])


def _store_models(session: Session, names: dict[str, str]) -> list[dict[str, Any]]:
    """Per store (shown by its name, ``names``): each device's running model (with its card)
    and its newest install report."""
    out: list[dict[str, Any]] = []
    for d in devices.list_devices(session):
        reports = devices.list_model_reports(session, d.id)
        last = reports[-1] if reports else None
        out.append(
            {
                "store": stores.label(d.store, names),
                "device_id": d.id,
                "model_version": d.model_version or "",
                "card": card_url(d.model_version) if d.model_version else "",
                "report": "" if last is None else f"{last.status} {last.model_version}",
                "reason": "" if last is None else (last.reason or ""),
            }
        )
    return out


def _rollouts(session: Session) -> list[dict[str, Any]]:
    """The newest staged rollouts, each with its audit events oldest first (the timeline)."""
    from central.services.rollouts import list_rollouts

    return [
        {
            "model_version": r.model_version,
            "champion_version": r.champion_version,
            "canary": r.canary_stores,
            "state": r.state,
            "events": [
                {"at": e.at.strftime("%Y-%m-%d %H:%M"), "action": e.action, "actor": e.actor, "reason": e.reason}
                for e in r.events
            ],
        }
        for r in list_rollouts(session, limit=5)
    ]
