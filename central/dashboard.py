"""The dashboard's view model: plain numbers and SVG geometry the template only prints.

No JavaScript and no CDN: a store network's head office may be offline, and the page must
render from central alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from central.models import utc_now
from central.services import devices, drift, stats

__all__ = ["DashboardView", "build_view"]

PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]
CHART_W, CHART_H, PAD = 720, 220, 30


@dataclass
class Bar:
    x: float
    y: float
    w: float
    h: float
    color: str
    title: str


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


def build_view(session: Session, *, threshold: float, days: int = 30, min_customers: int = 1) -> DashboardView:
    now = utc_now()
    view = DashboardView(
        generated_at=now.strftime("%Y-%m-%d %H:%M:%S UTC"), threshold=threshold, min_customers=min_customers
    )
    for d in devices.list_devices(session):
        view.devices.append(
            {
                "id": d.id,
                "store": d.store,
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

    rows, view.suppressed = stats.segment_mix_suppressed(session, days=days, min_customers=min_customers)
    segments = sorted({r.segment for r in rows})
    colours = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(segments)}
    view.segments = [(s, colours[s]) for s in segments]
    per_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    per_store: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        per_day[r.day][r.segment] += r.count
        per_store[r.store][r.segment] += r.count
    view.mix_total = sum(r.count for r in rows)
    day_list = sorted(per_day)
    if day_list:
        slot = (CHART_W - 2 * PAD) / len(day_list)
        peak = max(sum(c.values()) for c in per_day.values())
        for i, day in enumerate(day_list):
            x = PAD + i * slot + slot * 0.1
            y: float = CHART_H - PAD
            for seg in segments:
                count = per_day[day].get(seg, 0)
                if not count:
                    continue
                h = (CHART_H - 2 * PAD) * count / peak
                y -= h
                view.mix_bars.append(
                    Bar(
                        round(x, 1),
                        round(y, 1),
                        round(slot * 0.8, 1),
                        round(h, 1),
                        colours[seg],
                        f"{day} {seg}: {count}",
                    )
                )
            view.mix_days.append((round(x + slot * 0.4, 1), day[5:]))
    for store, counts in sorted(per_store.items()):
        total = sum(counts.values())
        view.store_mix.append(
            {
                "store": store,
                "total": total,
                "shares": [(seg, colours[seg], 100.0 * counts.get(seg, 0) / total) for seg in segments],
            }
        )

    for report in drift.latest_reports(session):
        inputs = sorted(report.psi.items(), key=lambda kv: -kv[1])
        view.drift.append(
            {
                "device_id": report.device_id,
                "model_version": report.model_version,
                "rows": report.rows,
                "max_psi": report.max_psi,
                "flagged": [k for k, v in inputs if v > threshold],
                "inputs": [(k, v, min(v / (2 * threshold), 1.0) * 100) for k, v in inputs[:8]],
                "when": _ago(report.created_at, now),
            }
        )

    acc = stats.accuracy(session, min_customers=min_customers)
    view.accuracy = {
        "evaluated": acc.evaluated,
        "accuracy": acc.accuracy,
        "recall": [
            (seg, value, acc.support.get(seg, 0), colours.get(seg, PALETTE[0])) for seg, value in acc.recall.items()
        ],
    }
    view.rollouts = _rollouts(session)
    return view


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
