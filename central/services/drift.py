"""Drift: a device's input histograms against its model's manifest reference (PSI per input).

Devices send counts aligned with the manifest ``reference`` bins (numbers: k bins then
missing; strings: categories, other, missing), as ``Runtime.drift_snapshot()`` produces them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from central.models import Device, DriftReport, Model, utc_now
from central.schemas import DriftCreate
from central.services.errors import NotFound, Rejected
from central.services.models import is_rolled_out
from edge_runtime.artifact import Manifest
from edge_runtime.drift import psi
from edge_runtime.exceptions import ManifestError

__all__ = ["flagged_inputs", "latest_reports", "record_drift", "reference_vectors"]


def reference_vectors(manifest: Manifest) -> dict[str, list[float]]:
    """The expected share vector per input, in the order devices send histogram counts.

    Numbers: k bins then missing; strings: categories, other, missing (docs/ARTIFACT.md,
    ``Reference.expected``). A non-finite share counts as 0.
    """
    return {name: [p if math.isfinite(p) else 0.0 for p in ref.expected] for name, ref in manifest.reference.items()}


def _registered_manifest(session: Session, model_version: str) -> Manifest:
    model = session.get(Model, model_version)
    if model is None:
        raise NotFound(f"model_version {model_version!r} is not registered at central")
    try:
        return Manifest.from_json(model.manifest)
    except ManifestError as exc:  # registered by an older central, before the strict contract
        raise Rejected(f"model_version {model_version}: its stored manifest is not readable: {exc}") from exc


def flagged_inputs(values: Mapping[str, float], threshold: float) -> list[str]:
    """The inputs whose PSI is above ``threshold``, sorted by name."""
    return sorted(name for name, value in values.items() if value > threshold)


def record_drift(session: Session, device: Device, report: DriftCreate, *, threshold: float) -> DriftReport:
    """PSI per input of ``report`` against the manifest reference; store and return the row.

    The row's ``flagged`` says whether any input is above ``threshold`` (the dashboard's
    filter); which inputs are is recomputed when read, against the threshold of that moment.

    Raises NotFound for an unregistered model, Rejected for a model never rolled out to the
    device's store, an input the reference lacks or a histogram whose length is not the
    reference's bin count.
    """
    expected = reference_vectors(_registered_manifest(session, report.model_version))
    if not is_rolled_out(session, report.model_version, device.store):
        raise Rejected(f"model_version: {report.model_version} was never rolled out to store {device.store!r}")
    values: dict[str, float] = {}
    rows = 0
    for name, counts in report.histograms.items():
        if name not in expected:
            raise Rejected(f"histograms.{name}: {report.model_version} has no reference for this input")
        if len(counts) != len(expected[name]):
            raise Rejected(f"histograms.{name}: {len(counts)} counts, the reference has {len(expected[name])} bins")
        values[name] = psi(expected[name], counts)
        rows = max(rows, sum(counts))
    row = DriftReport(
        device_id=device.id,
        model_version=report.model_version,
        rows=rows,
        psi=values,
        max_psi=max(values.values()),
        flagged=bool(flagged_inputs(values, threshold)),
        created_at=utc_now(),
    )
    session.add(row)
    session.commit()
    return row


def latest_reports(session: Session) -> list[DriftReport]:
    """Each device's newest drift report."""
    newest = (
        select(DriftReport.device_id, func.max(DriftReport.id).label("id")).group_by(DriftReport.device_id).subquery()
    )
    query = select(DriftReport).join(newest, newest.c.id == DriftReport.id).order_by(DriftReport.device_id)
    return list(session.scalars(query))
