"""Privacy at head office (issue 15, docs/PRIVACY.md).

* **Budgets.** A device's noised reports (``edge_runtime.privacy``) each spend ``epsilon``
  (and ``delta``); central sums what it accepted per device and UTC day of receipt and refuses
  a report that would go beyond ``EDGESEG_DP_EPSILON_PER_DAY`` / ``_DELTA_PER_DAY`` with a 409
  naming the budget. A report is stored once per ``report_id`` (a resend spends nothing).
* **Drift from noise.** PSI is computed on the noisy counts clamped at zero, minus the PSI the
  noise alone adds to reference-shaped counts of that size (``psi_noise_bias``, simulated with
  a generator seeded by the report id: the same report always gives the same number; all of
  it post-processing), and stored as an ordinary drift report, so the dashboard and
  ``/v1/stats/drift`` show it and flag it against the usual threshold.
* **Federated statistics.** Per store and input, the sums of the noisy histograms: the
  reference a retrain can read (bins, per-store weights) without any raw row leaving a till.
* **Erasure.** Deletes a customer's results and outcome at central, queues the erasure for
  every active device, and keeps an audit row that holds the ref only until the last device
  confirmed.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from central.models import Device, DriftReport, Outcome, Result, ResultKey, utc_now
from central.privacy_models import Erasure, ErasureDevice, PrivateReport
from central.privacy_schemas import BudgetPublic, ErasureConfirm, PrivateReportCreate
from central.services.drift import _registered_manifest, flagged_inputs, reference_vectors
from central.services.errors import Conflict, NotFound, Rejected
from central.services.models import is_rolled_out
from central.services.results import content_hash
from edge_runtime.artifact import NumberReference, StringReference
from edge_runtime.drift import psi
from edge_runtime.privacy import noise_scale, psi_noise_bias

__all__ = [
    "budget",
    "confirm_erasure",
    "erase_customer",
    "erasure_audit",
    "federated_statistics",
    "pending_erasures",
    "record_private_report",
    "resolve_customer_ref",
]

_REF = re.compile(r"^[0-9a-f]{16,64}$")
_SLACK = 1e-9  # float sums of ε: four reports of 0.25 must fit a budget of 1.0


def _today() -> str:
    return utc_now().strftime("%Y-%m-%d")


def budget(session: Session, device_id: str, *, epsilon_limit: float, delta_limit: float) -> BudgetPublic:
    """What ``device_id`` has spent today (central's UTC day) against the limits."""
    day = _today()
    spent_e, spent_d, reports = session.execute(
        select(
            func.coalesce(func.sum(PrivateReport.epsilon), 0.0),
            func.coalesce(func.sum(PrivateReport.delta), 0.0),
            func.count(),
        ).where(PrivateReport.device_id == device_id, PrivateReport.day == day)
    ).one()
    return BudgetPublic(
        device_id=device_id,
        day=day,
        epsilon_spent=float(spent_e),
        epsilon_limit=epsilon_limit,
        delta_spent=float(spent_d),
        delta_limit=delta_limit,
        reports=int(reports),
    )


def record_private_report(
    session: Session,
    device: Device,
    report: PrivateReportCreate,
    *,
    epsilon_limit: float,
    delta_limit: float,
    threshold: float,
) -> tuple[PrivateReport, dict[str, float], BudgetPublic]:
    """Store a noised report within the device's budget; its row, PSI per input and the budget.

    Raises Conflict (409) when the report's ε or δ would exceed today's budget (nothing is
    stored), NotFound for an unregistered model, Rejected for a model never rolled out to the
    store, an unknown input or class, or a histogram of the wrong length.
    """
    existing = session.scalars(
        select(PrivateReport).where(PrivateReport.device_id == device.id, PrivateReport.report_id == report.report_id)
    ).first()
    if existing is not None:  # a resend after a lost reply: already counted, spends nothing
        expected = reference_vectors(_registered_manifest(session, existing.model_version))
        values = _psi(expected, existing.histograms, existing.mechanism, existing.noise_std, existing.report_id)
        return existing, values, budget(session, device.id, epsilon_limit=epsilon_limit, delta_limit=delta_limit)
    manifest = _registered_manifest(session, report.model_version)
    if not is_rolled_out(session, report.model_version, device.store):
        raise Rejected(f"model_version: {report.model_version} was never rolled out to store {device.store!r}")
    expected = reference_vectors(manifest)
    for name, counts in report.histograms.items():
        if name not in expected:
            raise Rejected(f"histograms.{name}: {report.model_version} has no reference for this input")
        if len(counts) != len(expected[name]):
            raise Rejected(f"histograms.{name}: {len(counts)} counts, the reference has {len(expected[name])} bins")
    classes = set(manifest.target.classes)
    unknown = sorted(set(report.segments) - classes)
    if unknown:
        raise Rejected(f"segments.{unknown[0]}: not a class of {report.model_version}")
    spent = budget(session, device.id, epsilon_limit=epsilon_limit, delta_limit=delta_limit)
    if spent.epsilon_spent + report.epsilon > epsilon_limit + _SLACK:
        raise Conflict(
            f"privacy budget exhausted: device {device.id!r} has spent epsilon {spent.epsilon_spent:g} of its "
            f"{epsilon_limit:g} for {spent.day} (UTC, EDGESEG_DP_EPSILON_PER_DAY); this report asks "
            f"{report.epsilon:g} more. Send it after midnight UTC."
        )
    if spent.delta_spent + report.delta > delta_limit + _SLACK * 1e-6:
        raise Conflict(
            f"privacy budget exhausted: device {device.id!r} has spent delta {spent.delta_spent:g} of its "
            f"{delta_limit:g} for {spent.day} (UTC, EDGESEG_DP_DELTA_PER_DAY); this report asks {report.delta:g} more"
        )
    std_scale = noise_scale(report.mechanism, report.sensitivity, report.epsilon, report.delta)
    noise_std = math.sqrt(2.0) * std_scale if report.mechanism == "laplace" else std_scale
    row = PrivateReport(  # the report as sent (device_id checked by the route), plus central's facts
        **report.model_dump(exclude={"device_id", "day"}),
        device_id=device.id,
        store=device.store,
        day=spent.day,
        noise_std=noise_std,
        created_at=utc_now(),
    )
    session.add(row)
    values = _psi(expected, report.histograms, report.mechanism, noise_std, report.report_id)
    if values:
        session.add(
            DriftReport(
                device_id=device.id,
                model_version=report.model_version,
                rows=_rows(report.histograms),
                psi=values,
                max_psi=max(values.values()),
                flagged=bool(flagged_inputs(values, threshold)),
                created_at=utc_now(),
            )
        )
    session.commit()
    after = budget(session, device.id, epsilon_limit=epsilon_limit, delta_limit=delta_limit)
    return row, values, after


def _rows(histograms: Mapping[str, list[int]]) -> int:
    """Rows a report counted, estimated from its noisy histograms (each sums to the rows)."""
    sums = [sum(max(int(c), 0) for c in counts) for counts in histograms.values()]
    return max(0, round(statistics.median(sums))) if sums else 0


def _psi(
    expected: Mapping[str, list[float]], histograms: Mapping[str, list[int]], mechanism: str, std: float, seed: str
) -> dict[str, float]:
    """Debiased PSI per input of noisy counts: PSI of the counts clamped at zero minus what the
    noise alone adds (``edge_runtime.privacy.psi_noise_bias``), never below 0."""
    rows = _rows(histograms)
    rng = np.random.default_rng(int(seed, 16))
    out = {}
    for name, counts in histograms.items():
        raw = psi(expected[name], [max(int(c), 0) for c in counts])
        out[name] = round(max(0.0, raw - psi_noise_bias(expected[name], rows, mechanism, std, rng)), 12)
    return out


def federated_statistics(session: Session, model_version: str) -> dict[str, Any]:
    """The fleet's per-input histograms for ``model_version``, combined from noised reports.

    ``{"model_version", "reference": {input: {"type", "bin_edges" | "categories"}},
    "stores": {store: {"reports", "epsilon_spent", "rows", "histograms": {input: [noisy
    sums]}, "noise_std": {input: per-bin std of those sums}}}, "fleet": {"rows",
    "histograms": {input: [sums]}, "proportions": {input: [shares, clamped at 0]}},
    "weights": {store: share of the fleet's rows}}``. Never built from raw rows: only what
    devices sent with noise. A retrain reads it to place bins and to weight stores.
    """
    manifest = _registered_manifest(session, model_version)
    reference: dict[str, Any] = {}
    for name, ref in manifest.reference.items():
        if isinstance(ref, NumberReference):
            reference[name] = {"type": "number", "bin_edges": list(ref.bin_edges), "slots": "bins, then missing"}
        elif isinstance(ref, StringReference):
            reference[name] = {
                "type": "string",
                "categories": list(ref.categories),
                "slots": "categories, then other, then missing",
            }
    stores: dict[str, dict[str, Any]] = {}
    variance: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in session.scalars(
        select(PrivateReport).where(PrivateReport.model_version == model_version).order_by(PrivateReport.id)
    ):
        entry = stores.setdefault(row.store, {"reports": 0, "epsilon_spent": 0.0, "histograms": {}})
        entry["reports"] += 1
        entry["epsilon_spent"] += row.epsilon
        for name, counts in row.histograms.items():
            total = entry["histograms"].setdefault(name, [0] * len(counts))
            entry["histograms"][name] = [a + int(b) for a, b in zip(total, counts, strict=True)]
            variance[row.store][name] += row.noise_std**2
    fleet: dict[str, list[int]] = {}
    for store, entry in stores.items():
        sums = [sum(v) for v in entry["histograms"].values()]
        entry["rows"] = max(0, round(statistics.median(sums))) if sums else 0
        entry["noise_std"] = {name: math.sqrt(v) for name, v in variance[store].items()}
        for name, counts in entry["histograms"].items():
            total = fleet.setdefault(name, [0] * len(counts))
            fleet[name] = [a + b for a, b in zip(total, counts, strict=True)]
    rows = sum(e["rows"] for e in stores.values())
    proportions = {}
    for name, counts in fleet.items():
        clamped = [max(c, 0) for c in counts]
        total = sum(clamped)
        proportions[name] = [c / total if total else 0.0 for c in clamped]
    return {
        "model_version": model_version,
        "source": "noised device reports (edge_runtime.privacy); no raw rows",
        "reference": reference,
        "stores": dict(sorted(stores.items())),
        "fleet": {"rows": rows, "histograms": fleet, "proportions": proportions},
        "weights": {s: (e["rows"] / rows if rows else 0.0) for s, e in sorted(stores.items())},
    }


# ---------------------------------------------------------------------- erasure
def resolve_customer_ref(value: str, *, raw: bool, secret: str) -> str:
    """The customer ref to erase: ``value`` itself when it is one (16-64 lowercase hex) and
    ``raw`` is false, else the pseudonym of the raw id ``value`` under the deployment secret.

    Raises Rejected when a raw id is given but central holds no secret (it cannot compute a
    ref without it: erase by ref, or configure EDGESEG_PSEUDONYM_SECRET)."""
    if not raw and _REF.match(value):
        return value
    if not secret:
        raise Rejected(
            f"{value!r} is not a customer ref (16-64 lowercase hex digits) and central holds no pseudonym "
            "secret to compute one from a raw id: erase by ref, or set EDGESEG_PSEUDONYM_SECRET to the "
            "deployment's EDGESEG_SECRET (docs/PRIVACY.md)"
        )
    from edge_runtime.runtime import customer_ref_for

    return customer_ref_for(secret, value)


def _delete_results(session: Session, ref: str, device_id: str | None = None) -> int:
    """Delete the ref's results (of one device, or all); their exactly-once keys are kept but
    re-hashed as the same result without the ref, which is what the device resends if it never
    saw the ack (``erase_customer`` unlinks unsynced rows): the resend is a duplicate, not a 409."""
    query = select(Result).where(Result.customer_ref == ref)
    if device_id is not None:
        query = query.where(Result.device_id == device_id)
    rows = list(session.scalars(query))
    for r in rows:
        unlinked = content_hash(
            segment=r.segment,
            probabilities=r.probabilities,
            model_version=r.model_version,
            customer_ref=None,
            classified_at=r.classified_at,
        )
        session.execute(
            update(ResultKey)
            .where(ResultKey.device_id == r.device_id, ResultKey.epoch == r.epoch, ResultKey.seq == r.seq)
            .values(content_sha256=unlinked)
        )
    if rows:
        ids = [r.id for r in rows]
        session.execute(delete(Result).where(Result.id.in_(ids)).execution_options(synchronize_session=False))
    return len(rows)


def erase_customer(session: Session, customer_ref: str) -> Erasure:
    """Delete ``customer_ref``'s results and outcome now, and queue the erasure for every
    device that is not revoked (each applies it to its outbox and customer state at its next
    sync and confirms). The returned row is the audit record."""
    results = _delete_results(session, customer_ref)
    outcomes = session.scalar(select(func.count()).select_from(Outcome).where(Outcome.customer_ref == customer_ref))
    session.execute(delete(Outcome).where(Outcome.customer_ref == customer_ref))
    devices = list(session.scalars(select(Device.id).where(Device.revoked_at.is_(None))))
    erasure = Erasure(
        customer_ref=customer_ref if devices else None,
        requested_at=utc_now(),
        completed_at=None if devices else utc_now(),
        results_deleted=results,
        outcomes_deleted=int(outcomes or 0),
        devices=len(devices),
    )
    session.add(erasure)
    session.flush()
    session.add_all(ErasureDevice(erasure_id=erasure.id, device_id=d) for d in devices)
    session.commit()
    return erasure


def pending_erasures(session: Session, device_id: str) -> list[tuple[int, str]]:
    """(erasure id, customer ref) this device has not confirmed yet, oldest first."""
    rows = session.execute(
        select(Erasure.id, Erasure.customer_ref)
        .join(ErasureDevice, ErasureDevice.erasure_id == Erasure.id)
        .where(ErasureDevice.device_id == device_id, ErasureDevice.confirmed_at.is_(None))
        .order_by(Erasure.id)
    ).all()
    return [(int(i), str(ref)) for i, ref in rows if ref is not None]


def confirm_erasure(session: Session, device: Device, erasure_id: int, removed: ErasureConfirm) -> ErasureDevice:
    """The device applied the erasure: delete anything of the ref that reached central from it
    meanwhile, and forget the ref once every device confirmed (idempotent)."""
    part = session.get(ErasureDevice, (erasure_id, device.id))
    erasure = session.get(Erasure, erasure_id)
    if part is None or erasure is None:
        raise NotFound(f"erasure {erasure_id} was not queued for device {device.id!r}")
    if part.confirmed_at is not None:
        return part
    if erasure.customer_ref is not None:
        part.late_results_deleted = _delete_results(session, erasure.customer_ref, device.id)
    part.confirmed_at = utc_now()
    part.device_removed = removed.results_deleted + removed.results_unlinked + removed.state_deleted
    session.flush()
    open_parts = session.scalar(
        select(func.count())
        .select_from(ErasureDevice)
        .where(ErasureDevice.erasure_id == erasure_id, ErasureDevice.confirmed_at.is_(None))
    )
    if not open_parts:
        erasure.customer_ref = None
        erasure.completed_at = utc_now()
    session.commit()
    return part


def erasure_audit(session: Session) -> list[dict[str, Any]]:
    """Every erasure, newest first: when, what it removed, devices queued and confirmed."""
    confirmed = (
        select(ErasureDevice.erasure_id, func.count().label("n"))
        .where(ErasureDevice.confirmed_at.is_not(None))
        .group_by(ErasureDevice.erasure_id)
        .subquery()
    )
    rows = session.execute(
        select(Erasure, func.coalesce(confirmed.c.n, 0))
        .outerjoin(confirmed, confirmed.c.erasure_id == Erasure.id)
        .order_by(Erasure.id.desc())
    ).all()
    return [
        {
            "id": e.id,
            "requested_at": e.requested_at,
            "completed_at": e.completed_at,
            "results_deleted": e.results_deleted,
            "outcomes_deleted": e.outcomes_deleted,
            "devices": e.devices,
            "devices_confirmed": int(n),
        }
        for e, n in rows
    ]
