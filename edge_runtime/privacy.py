"""Differential privacy on what a device sends about many customers, and erasure of one.

**What is noised.** The aggregates a device syncs (per-input drift histograms over the
manifest's reference bins and the segment mix: results per class) leave the device only with
calibrated noise when a :class:`PrivacyBudget` is configured (``edge-runtime sync`` does so
by default, ``EDGESEG_DP_*``). Per-customer results (``customer_ref``, segment,
probabilities) are *not* noised: head office needs them for outcomes and accuracy; they are
pseudonymised (HMAC with the deployment secret) instead. docs/PRIVACY.md says what each
protects against.

**The mechanism, by hand.** One classified row adds exactly one to each histogram of the
report (every input has a ``missing`` slot) and one to the segment mix, so for a report of
``v`` count vectors the L1 sensitivity is ``v`` and the L2 sensitivity ``sqrt(v)``:

* Laplace (default, pure ε-DP): each count gets ``Laplace(0, b)``, ``b = v / ε_report``
  (variance ``2 b²``);
* Gaussian ((ε, δ)-DP, the classic bound, needs ``ε_report <= 1``): ``N(0, σ²)``,
  ``σ = sqrt(v) · sqrt(2 ln(1.25 / δ_report)) / ε_report``.

The noisy counts are rounded to integers (post-processing: no privacy cost) and *not* clamped
at zero, so head office's sums over many reports stay unbiased; central clamps at zero
before it computes PSI. ``ε_report = ε_day / reports_per_day``: the device sends at most
``reports_per_day`` noised reports per UTC day and keeps further counts spooled for the next
day; central adds up the ε of what it accepted per device and day and refuses a report
beyond ``ε_day`` (409 naming the budget). Each row is counted in exactly one noised drift
release and one noised mix release, so by composition a customer classified at most
``reports_per_day`` times in a day at one till is protected with ``ε_day`` for that day
(Laplace: the loss adds up with the L1 distance, one visit costs at most ``ε_report``).

Why no library: OpenDP and Google's ``dp-accounting`` are the well-kept choices, but the edge
runtime may import only numpy, onnxruntime and cryptography (a test blocks the rest), OpenDP
is a ~30 MB compiled wheel and dp-accounting pulls in scipy and absl. The accounting needed
here is a sum of ε (and δ) per day, and the mechanisms are the two lines of
:func:`noise_scale`; their distribution is tested (``tests/edge/test_edge_privacy.py``).
Noise comes from numpy's ``Generator`` seeded by the OS (``secrets``-grade entropy through
``SeedSequence``); tests pass their own generator.

**Erasure.** :func:`erase_customer` removes a customer ref from the outbox file and the
customer state: synced results are deleted (except the newest row, whose seq the outbox
needs to keep counting), unsynced ones lose their ``customer_ref`` (they still count in the
segment mix, nobody can link them), and the customer's feature state is deleted.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

__all__ = [
    "DEFAULT_DP_DELTA",
    "DEFAULT_DP_EPSILON",
    "DEFAULT_DP_REPORTS_PER_DAY",
    "MECHANISMS",
    "PrivacyBudget",
    "PrivacyLedger",
    "erase_customer",
    "noise_scale",
    "noisy_counts",
    "psi_noise_bias",
    "utc_day",
]

log = logging.getLogger(__name__)

MECHANISMS: Final = ("laplace", "gaussian")
# ε per device per UTC day. Chosen with `python -m benchmarks.privacy_price` on the bundled
# Online Retail data (docs/PRIVACY.md has the table): at ε = 2 in one daily report a store
# classifying 2,000 customers a day has no stable day flagged (200 simulated days) and flags
# 58 % of drifted days where exact counts flag 66 %; 1,000 a day: 12 % false flags; 500 a
# day needs ε = 8 (a very small store pays for privacy with drift alerts).
DEFAULT_DP_EPSILON: Final = 2.0
# Noised reports per device and UTC day: one daily report is the least noisy per row (four
# reports at ε/4 each have 4x the noise std on a quarter of the rows).
DEFAULT_DP_REPORTS_PER_DAY: Final = 1
# δ per day for the Gaussian mechanism (Laplace needs none): far below 1 / customers.
DEFAULT_DP_DELTA: Final = 1e-6
_REF = re.compile(r"^[0-9a-f]{16,64}$")


def utc_day(moment: datetime | None = None) -> str:
    """``YYYY-MM-DD`` of ``moment`` (default now) in UTC: the unit of the privacy budget."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")


@dataclass(frozen=True, kw_only=True)
class PrivacyBudget:
    """A device's differential-privacy budget: ``epsilon`` (and ``delta``) per UTC day, spent
    in at most ``reports_per_day`` equal parts by the noised reports it sends."""

    epsilon: float = DEFAULT_DP_EPSILON
    reports_per_day: int = DEFAULT_DP_REPORTS_PER_DAY
    mechanism: str = "laplace"
    delta: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.epsilon, bool) or not (
            isinstance(self.epsilon, int | float) and 0 < self.epsilon < math.inf
        ):
            raise ValueError(
                f"The 'epsilon' of PrivacyBudget must be a finite number > 0. Got {self.epsilon!r} instead."
            )
        if (
            isinstance(self.reports_per_day, bool)
            or not isinstance(self.reports_per_day, int)
            or self.reports_per_day < 1
        ):
            raise ValueError(
                f"The 'reports_per_day' of PrivacyBudget must be an int >= 1. Got {self.reports_per_day!r} instead."
            )
        if self.mechanism not in MECHANISMS:
            raise ValueError(
                f"The 'mechanism' of PrivacyBudget must be one of {MECHANISMS}. Got {self.mechanism!r} instead."
            )
        if self.mechanism == "laplace" and self.delta != 0:
            raise ValueError(f"The Laplace mechanism needs no 'delta' (pure ε-DP): set 0. Got {self.delta!r} instead.")
        if self.mechanism == "gaussian":
            if not 0 < self.delta < 1:
                raise ValueError(f"The Gaussian mechanism needs 0 < 'delta' < 1. Got {self.delta!r} instead.")
            if self.epsilon_per_report > 1:
                raise ValueError(
                    "The Gaussian mechanism's classic bound holds for ε <= 1 per report: "
                    f"epsilon {self.epsilon!r} / reports_per_day {self.reports_per_day} = {self.epsilon_per_report!r}"
                )

    @property
    def epsilon_per_report(self) -> float:
        return self.epsilon / self.reports_per_day

    @property
    def delta_per_report(self) -> float:
        return self.delta / self.reports_per_day

    def scale(self, vectors: int) -> float:
        """Laplace ``b`` or Gaussian ``σ`` of one report made of ``vectors`` count vectors."""
        return noise_scale(self.mechanism, vectors, self.epsilon_per_report, self.delta_per_report)

    def std(self, vectors: int) -> float:
        """Standard deviation of the noise on each count of such a report."""
        scale = self.scale(vectors)
        return math.sqrt(2.0) * scale if self.mechanism == "laplace" else scale

    def to_json(self) -> dict[str, Any]:
        """What each report records about the noise it carries."""
        return {
            "mechanism": self.mechanism,
            "epsilon": self.epsilon_per_report,
            "delta": self.delta_per_report,
        }


def noise_scale(mechanism: str, vectors: int, epsilon: float, delta: float = 0.0) -> float:
    """Laplace ``b = v / ε`` (L1 sensitivity ``v``) or Gaussian ``σ = sqrt(v) sqrt(2 ln(1.25/δ)) / ε``
    (L2 sensitivity ``sqrt(v)``) for a release of ``v`` count vectors to which one row adds one
    each.

    >>> noise_scale("laplace", 14, 0.25)
    56.0
    >>> round(noise_scale("gaussian", 4, 1.0, 1e-6), 3)
    10.597
    """
    if vectors < 1:
        raise ValueError(f"a report needs at least one count vector. Got {vectors!r}.")
    if mechanism == "laplace":
        return vectors / epsilon
    if mechanism == "gaussian":
        return math.sqrt(vectors) * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon
    raise ValueError(f"The 'mechanism' must be one of {MECHANISMS}. Got {mechanism!r} instead.")


def sample_noise(budget: PrivacyBudget, vectors: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of the noise one count of a ``vectors``-vector report receives (float)."""
    scale = budget.scale(vectors)
    if budget.mechanism == "laplace":
        return rng.laplace(0.0, scale, size)
    return rng.normal(0.0, scale, size)


def noisy_counts(
    vectors: Mapping[str, Sequence[int]], budget: PrivacyBudget, rng: np.random.Generator
) -> dict[str, list[int]]:
    """Every count of every vector plus the budget's per-report noise, rounded to integers.

    All vectors of ``vectors`` form one release (sensitivity = their number), so pass every
    histogram and the segment mix of one report together.
    """
    if not vectors:
        return {}
    out: dict[str, list[int]] = {}
    for name, counts in vectors.items():
        noise = sample_noise(budget, len(vectors), len(counts), rng)
        out[name] = [int(v) for v in np.rint(np.asarray(counts, dtype=np.float64) + noise)]
    return out


def psi_noise_bias(
    reference_proportions: Sequence[float],
    rows: int,
    mechanism: str,
    std: float,
    rng: np.random.Generator,
    *,
    draws: int = 200,
) -> float:
    """How much PSI the noise alone adds to a histogram of ``rows`` rows drawn from the
    reference itself: mean PSI of (multinomial draw + noise, clamped at 0) minus mean PSI of
    the draw alone, over ``draws`` simulations.

    Noise clamped at zero inflates sparse bins (a category with a reference share of 0.1 %
    shows a few percent), so PSI of noised counts is biased upwards, most for small stores
    and many categories. Central subtracts this bias (post-processing: it reads only the
    noised report and public numbers), so a stable store is not flagged for the noise.
    """
    expected = np.asarray(reference_proportions, dtype=np.float64)
    expected = np.where(np.isfinite(expected) & (expected > 0), expected, 0.0)
    if rows <= 0 or expected.sum() <= 0 or std <= 0:
        return 0.0
    shares = expected / expected.sum()
    drawn = rng.multinomial(rows, shares, size=draws).astype(np.float64)
    if mechanism == "laplace":
        noise = rng.laplace(0.0, std / math.sqrt(2.0), drawn.shape)
    else:
        noise = rng.normal(0.0, std, drawn.shape)
    noisy = np.maximum(np.rint(drawn + noise), 0.0)
    return max(0.0, float(_psi_rows(shares, noisy).mean() - _psi_rows(shares, drawn).mean()))


def _psi_rows(shares: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``edge_runtime.drift.psi`` of each row of ``counts`` (vectorised, same floor)."""
    from edge_runtime.drift import EPSILON

    e = np.maximum(shares, EPSILON)
    totals = counts.sum(axis=1, keepdims=True)
    a = np.maximum(counts / np.where(totals > 0, totals, 1.0), EPSILON)
    values: np.ndarray = ((a - e) * np.log(a / e)).sum(axis=1)
    return np.where(totals[:, 0] > 0, values, 0.0)


def new_generator() -> np.random.Generator:
    """A generator seeded from the OS's entropy (never a fixed seed outside tests)."""
    return np.random.default_rng(np.random.SeedSequence())


# ------------------------------------------------------------------ the device's ledger
_LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS privacy_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS privacy_spent (day TEXT PRIMARY KEY, reports INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS privacy_outgoing (id TEXT PRIMARY KEY, payload TEXT NOT NULL);
"""


class PrivacyLedger:
    """The device's side of the budget, in the outbox file (tables ``privacy_*``).

    ``privacy_spent``: noised reports made per UTC day (never more than the budget allows).
    ``privacy_outgoing``: noised reports made but not yet accepted by central; they are resent
    *as made* (fresh noise on the same counts would be a second release), then deleted.
    ``privacy_meta.mix_through``: the highest result seq already counted in a segment mix.
    """

    def __init__(self, outbox_path: str | Path) -> None:
        self.path = Path(outbox_path)

    def _connect(self) -> sqlite3.Connection:
        from edge_runtime.outbox import connect

        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = connect(self.path)
        db.executescript(_LEDGER_SCHEMA)
        return db

    def reports_made(self, day: str) -> int:
        db = self._connect()
        try:
            row = db.execute("SELECT reports FROM privacy_spent WHERE day = ?", (day,)).fetchone()
        finally:
            db.close()
        return 0 if row is None else int(row[0])

    def outgoing(self) -> list[dict[str, Any]]:
        """Noised reports waiting for central's acceptance, oldest first."""
        db = self._connect()
        try:
            rows = db.execute("SELECT payload FROM privacy_outgoing ORDER BY rowid").fetchall()
        finally:
            db.close()
        return [json.loads(text) for (text,) in rows]

    def delivered(self, report_id: str) -> None:
        db = self._connect()
        try:
            db.execute("DELETE FROM privacy_outgoing WHERE id = ?", (report_id,))
        finally:
            db.close()

    def segment_mix(self) -> tuple[dict[str, dict[str, int]], int]:
        """Results per model version and class not yet counted in a mix (every class of the
        model, zero included), and the highest seq they cover (0: none)."""
        db = self._connect()
        try:
            through = int(
                (db.execute("SELECT value FROM privacy_meta WHERE key = 'mix_through'").fetchone() or (0,))[0]
            )
            rows = db.execute(
                "SELECT m.model_version, m.classes, r.segment, COUNT(*), MAX(r.seq) FROM results r "
                "JOIN models m ON m.id = r.model_id WHERE r.seq > ? GROUP BY m.id, r.segment",
                (through,),
            ).fetchall()
        finally:
            db.close()
        mix: dict[str, dict[str, int]] = {}
        top = through
        for version, classes, segment, count, seq in rows:
            counts = mix.setdefault(str(version), {})
            for name in json.loads(classes):
                counts.setdefault(str(name), 0)
            counts[str(segment)] = counts.get(str(segment), 0) + int(count)
            top = max(top, int(seq))
        return mix, top

    def commit_report(
        self, payload: Mapping[str, Any], *, day: str, drift_ids: Sequence[int], mix_through: int
    ) -> None:
        """In one transaction: keep the noised report for sending, count it against ``day``'s
        budget, take its drift rows out of the spool and advance the mix watermark. A crash
        leaves the counts either unreported or in exactly one noised report."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO privacy_outgoing (id, payload) VALUES (?, ?)",
                    (str(payload["report_id"]), json.dumps(payload, sort_keys=True)),
                )
                db.execute(
                    "INSERT INTO privacy_spent (day, reports) VALUES (?, 1) "
                    "ON CONFLICT (day) DO UPDATE SET reports = reports + 1",
                    (day,),
                )
                db.executemany("DELETE FROM drift WHERE id = ?", [(int(i),) for i in drift_ids])
                db.execute(
                    "INSERT INTO privacy_meta (key, value) VALUES ('mix_through', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = MAX(CAST(value AS INTEGER), excluded.value)",
                    (str(mix_through),),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            db.close()


def private_report(
    *,
    device_id: str,
    model_version: str,
    histograms: Mapping[str, Sequence[int]],
    segments: Mapping[str, int],
    budget: PrivacyBudget,
    rng: np.random.Generator,
    day: str,
) -> dict[str, Any]:
    """The ``/v1/privacy/reports`` body: one release of noised histograms and segment mix."""
    vectors: dict[str, Sequence[int]] = {f"h:{name}": counts for name, counts in histograms.items()}
    names = sorted(segments)
    if names:
        vectors["segments"] = [segments[n] for n in names]
    noised = noisy_counts(vectors, budget, rng)
    return {
        "report_id": uuid.uuid4().hex,
        "device_id": device_id,
        "model_version": model_version,
        "day": day,
        **budget.to_json(),
        "sensitivity": len(vectors),
        "histograms": {name[2:]: counts for name, counts in noised.items() if name.startswith("h:")},
        "segments": dict(zip(names, noised.get("segments", []), strict=True)),
    }


# ------------------------------------------------------------------ erasure
def _checkpoint(db: sqlite3.Connection) -> None:
    """Copy the WAL into the file and truncate it, so the erased rows' old page images do not
    linger in the ``-wal`` file (best effort: a reader holding a snapshot delays it)."""
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:  # pragma: no cover - busy; the next checkpoint overwrites them
        log.warning("WAL checkpoint after an erasure did not run: %s", exc)


def erase_customer(outbox_path: str | Path, ref: str, state_path: str | Path | None = None) -> dict[str, int]:
    """Remove ``ref`` from the outbox file and the customer state; how many rows each lost.

    ``{"results_deleted", "results_unlinked", "state_deleted"}``: synced results are deleted
    (the newest row stays, unlinked: the outbox numbers new results after it), unsynced ones
    keep their segment for the sync but lose the ref. Idempotent.
    """
    if not isinstance(ref, str) or not _REF.match(ref):
        raise ValueError(f"an erasure needs a customer ref (16-64 lowercase hex digits). Got {ref!r} instead.")
    from edge_runtime.outbox import connect

    out = {"results_deleted": 0, "results_unlinked": 0, "state_deleted": 0}
    if Path(outbox_path).exists():
        db = connect(outbox_path)
        try:
            db.execute("PRAGMA secure_delete=ON")  # freed pages are zeroed, not left readable
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT value FROM meta WHERE key = 'synced_through'").fetchone()
                through = int(row[0]) if row is not None else 0
                before = db.total_changes
                db.execute(
                    "DELETE FROM results WHERE customer_ref = ? AND seq < (SELECT MAX(seq) FROM results) "
                    "AND (seq <= ? OR seq IN (SELECT seq FROM synced_above))",
                    (ref, through),
                )
                out["results_deleted"] = db.total_changes - before
                before = db.total_changes
                db.execute("UPDATE results SET customer_ref = NULL WHERE customer_ref = ?", (ref,))
                out["results_unlinked"] = db.total_changes - before
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            _checkpoint(db)
        finally:
            db.close()
    if state_path is not None and Path(state_path).exists():
        from edge_runtime.customer_state import CustomerState

        with CustomerState(state_path) as state:
            out["state_deleted"] = int(state.forget(ref))
    return out
