"""The sync protocol: results exactly once, and drift counts, from the device to head office.

**Results** (docs/DESIGN.md §5). The device keeps every result in its outbox until central has
acknowledged it. A round reads a bounded batch (``outbox.pending(batch_size)``), POSTs it to
``/v1/results:batch`` and marks synced only the seqs of that batch central answered for.
Central stores each ``(device_id, seq)`` once, so resending after a lost reply is harmless: the
reply then counts them as duplicates, which also means central holds them. Nothing here deletes
a row: the outbox decides what to prune, and only among synced rows.

Every batch carries the outbox's ``epoch`` (issue 10, item 2). The device never marks anything
synced on an ack inconsistent with its outbox: ``acked_through`` above the highest seq it ever
sent in this epoch, or an echoed ``epoch`` that is not its own (central is answering for some
other file: a recreated outbox, a restored database). That and a 409 (central holds different
content under a seq of this batch) are logged at ERROR, kept as the outbox's ``sync_alert``
(``edge-runtime status`` shows it) and raised as SyncError; neither is retried.

**Drift.** A ``Runtime`` counts every classified row in per-input histograms over the
manifest's reference bins. The counts persist with the outbox, in the same SQLite file
(``edge_runtime.outbox``: checkpointed in the transaction of every 100th result, spooled at
close, recovered from a crashed writer), and whoever owns the Runtime (``edge-runtime serve``
every minute and at exit, ``edge-runtime classify`` at exit) saves snapshots with
:meth:`DriftSpool.save` into the file's ``drift`` table. A sync round then sends what is
spooled, summed per model version, to ``/v1/drift``; central answers PSI per input and its
dashboard shows it. ``sync`` sends drift once per run when the spool holds anything; ``sync
--follow`` every ``drift_interval_s`` (900 s by default, ``EDGESEG_DRIFT_INTERVAL_S``). Counts
central can never accept (404: model not registered, 422: bins do not match its reference)
are dropped with a warning; any other failure keeps them for the next round.

**Privacy** (docs/PRIVACY.md). With a :class:`~edge_runtime.privacy.PrivacyBudget` the drift
counts and the segment mix (results per class since the last report) leave only noised, as
``/v1/privacy/reports`` (at most ``reports_per_day`` a UTC day; counts beyond wait in the
spool for the next day, and a report central refuses with 409 for the budget waits too). A
noised report is kept in the file until central accepts it and resent as made. With an
:class:`ErasureTarget` each round first asks central for erasures (``GET
/v1/devices/{id}/erasures``), applies them to the outbox and the customer state
(:func:`~edge_runtime.privacy.erase_customer`) and confirms each, before any result is sent.

Requests, retries and backoff are :class:`~edge_runtime.client.HeadOfficeClient`'s; this
module decides what to send and what an answer proves::

    head_office = HeadOfficeClient("https://central.example", device_id="d-01", token="…")
    report = SyncClient(head_office).sync_once(outbox, drift=DriftSpool.for_outbox(path))
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol

import numpy as np

from edge_runtime.client import HeadOfficeClient
from edge_runtime.exceptions import RetryableError, SyncError
from edge_runtime.privacy import PrivacyBudget, PrivacyLedger, erase_customer, new_generator, private_report, utc_day

__all__ = [
    "BATCH_PATH",
    "DRIFT_PATH",
    "DriftSpool",
    "ErasureTarget",
    "PendingDrift",
    "SyncClient",
    "SyncReport",
]

log = logging.getLogger(__name__)

BATCH_PATH = "/v1/results:batch"
DRIFT_PATH = "/v1/drift"
EVENTS_PATH = "/v1/devices/{device_id}/events"
PRIVATE_PATH = "/v1/privacy/reports"
ERASURES_PATH = "/v1/devices/{device_id}/erasures"
_EVENT_DETAIL_CHARS = 2000
# Central's answers that mean these counts will never be accepted: keeping them would resend
# them forever. 404: the model is not registered there; 422: the bins do not match it.
_DRIFT_NEVER_ACCEPTED = frozenset({404, 422})


class OutboxLike(Protocol):
    """What a sync round needs of ``edge_runtime.outbox.Outbox``."""

    epoch: str

    def pending(self, limit: int) -> list[dict[str, Any]]: ...

    def mark_synced(self, seqs: Iterable[int]) -> int: ...

    def backlog(self) -> int: ...

    def record_sent(self, seq: int) -> None: ...

    def sent_through(self) -> int: ...

    def sync_alert(self) -> str | None: ...

    def set_sync_alert(self, message: str | None) -> None: ...

    def prune(self) -> int: ...

    def events(self, *, unreported_only: bool = False) -> list[dict[str, Any]]: ...

    def mark_events_reported(self, ids: Iterable[int]) -> None: ...


@dataclass
class SyncReport:
    """What one ``sync_once`` round did (results, then drift)."""

    batches: int = 0
    sent: int = 0
    marked: int = 0
    stored: int = 0
    duplicates: int = 0
    retries: int = 0
    acked_through: int | None = None
    backlog: int | None = None
    drift_reports: int = 0
    drift_rows: int = 0
    drift_flagged: list[str] = field(default_factory=list)
    pruned: int = 0
    events_reported: int = 0
    private_reports: int = 0
    private_held: int = 0
    erasures_applied: int = 0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def count_retry(self, error: RetryableError, delay: float) -> None:
        """``on_retry`` hook of the head office client."""
        self.errors.append(str(error))
        self.retries += 1


# ---------------------------------------------------------------------- drift spool
@dataclass(frozen=True)
class PendingDrift:
    """Spooled counts of one model version, summed, and the spool rows they came from."""

    model_version: str
    rows: int
    histograms: dict[str, list[int]]
    ids: tuple[int, ...]


class DriftSpool:
    """Drift counts waiting for head office: the ``drift`` table of the outbox file.

    One mechanism for every count (issue 10 item 12): snapshots saved here, checkpoints a dead
    Runtime left (``edge_runtime.outbox``) and what a Runtime spooled at close all are rows of
    that table; a sync round sends them summed per model version and deletes only the rows it
    read once central accepted them, so a Runtime process and a sync process share the file
    (SQLite WAL, short transactions) without losing or doubling a count. Counts only: no raw
    value leaves the Runtime. Spool files of older versions (``<outbox>-drift/*.json``) are
    moved into the table when found.
    """

    def __init__(self, outbox_path: str | Path) -> None:
        self.path = Path(outbox_path)
        self.legacy_folder = Path(f"{outbox_path}-drift")

    @classmethod
    def for_outbox(cls, outbox_path: str | Path) -> DriftSpool:
        """The spool of an outbox (the same file)."""
        return cls(outbox_path)

    def _connect(self) -> sqlite3.Connection:
        from edge_runtime.outbox import connect

        self.path.parent.mkdir(parents=True, exist_ok=True)
        return connect(self.path)

    def save(self, snapshot: Mapping[str, Any]) -> int | None:
        """Spool a ``Runtime.drift_snapshot(reset=True)``; its row id, None when it counted no rows."""
        from edge_runtime.outbox import spool_snapshot

        if not snapshot.get("rows") or not snapshot.get("inputs"):
            return None
        db = self._connect()
        try:
            return spool_snapshot(db, dict(snapshot))
        finally:
            db.close()

    def save_every(self, snapshot: Callable[[], Mapping[str, Any]], period: float, stopped: threading.Event) -> None:
        """Save ``snapshot()`` every ``period`` seconds until ``stopped`` is set (a thread body)."""
        while not stopped.wait(period):
            try:
                self.save(snapshot())
            except (OSError, sqlite3.Error) as exc:  # a full disk must not stop the till
                log.warning("drift counts not saved to %s: %s", self.path, exc)

    def _import_legacy(self, db: sqlite3.Connection) -> None:
        from edge_runtime.outbox import spool_snapshot

        for path in sorted(self.legacy_folder.glob("*.json")):
            try:
                snapshot = json.loads(path.read_text(encoding="utf-8"))
                spool_snapshot(db, snapshot)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("dropping unreadable drift file %s: %s", path, exc)
            path.unlink(missing_ok=True)

    def pending(self) -> list[PendingDrift]:
        """Spooled counts per model version (oldest first); unreadable rows are dropped."""
        if not self.path.exists() and not self.legacy_folder.is_dir():
            return []
        db = self._connect()
        try:
            if self.legacy_folder.is_dir():
                self._import_legacy(db)
            rows = db.execute("SELECT id, snapshot FROM drift ORDER BY id").fetchall()
        finally:
            db.close()
        merged: dict[str, PendingDrift] = {}
        for row_id, text in rows:
            try:
                snapshot = json.loads(text)
                version = str(snapshot["model_version"])
                count = int(snapshot["rows"])
                counts = {str(k): [int(c) for c in v["counts"]] for k, v in snapshot["inputs"].items()}
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("dropping unreadable drift row %d of %s: %s", row_id, self.path, exc)
                self.discard([row_id])
                continue
            before = merged.get(version)
            if before is None:
                merged[version] = PendingDrift(version, count, counts, (row_id,))
            elif _same_bins(before.histograms, counts):
                summed = {k: [a + b for a, b in zip(v, counts[k], strict=True)] for k, v in before.histograms.items()}
                merged[version] = PendingDrift(version, before.rows + count, summed, (*before.ids, row_id))
            else:  # one model version has one set of reference bins: this row is not ours
                log.warning("dropping drift row %d: other bins than %s's earlier rows", row_id, version)
                self.discard([row_id])
        return list(merged.values())

    def discard(self, ids: Iterable[int]) -> None:
        """Delete spool rows (after central accepted them, or when it never will)."""
        wanted = [(int(i),) for i in ids]
        if not wanted:
            return
        db = self._connect()
        try:
            db.executemany("DELETE FROM drift WHERE id = ?", wanted)
        finally:
            db.close()


@dataclass(frozen=True)
class ErasureTarget:
    """Where a device applies erasures: its outbox file and its customer state file."""

    outbox_path: Path
    customer_state_path: Path | None = None


def _same_bins(a: Mapping[str, list[int]], b: Mapping[str, list[int]]) -> bool:
    return a.keys() == b.keys() and all(len(a[k]) == len(b[k]) for k in a)


def drift_payload(device_id: str, model_version: str, histograms: Mapping[str, Iterable[int]]) -> dict[str, Any]:
    """The ``/v1/drift`` body: counts per input aligned with the manifest's reference bins."""
    return {
        "device_id": device_id,
        "model_version": model_version,
        "histograms": {name: list(counts) for name, counts in histograms.items()},
    }


# ---------------------------------------------------------------------- the client
class SyncClient:
    """Drains an outbox (and a drift spool) to central in bounded batches; safe to interrupt."""

    def __init__(
        self,
        head_office: HeadOfficeClient,
        *,
        batch_size: int = 500,
        max_batches: int | None = None,
        privacy: PrivacyBudget | None = None,
        erasure: ErasureTarget | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"The 'batch_size' parameter of SyncClient must be an int >= 1. Got {batch_size!r} instead."
            )
        if max_batches is not None and max_batches < 1:
            raise ValueError(
                f"The 'max_batches' parameter of SyncClient must be None or >= 1. Got {max_batches!r} instead."
            )
        self.head_office = head_office
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.privacy = privacy
        self.erasure = erasure
        self._rng = rng if rng is not None else new_generator()
        self._highest_ack = 0

    @property
    def device_id(self) -> str:
        return self.head_office.device_id

    @staticmethod
    def acknowledged(seqs: Iterable[int], ack: Mapping[str, Any]) -> list[int]:
        """The seqs of a batch that central's ack proves it holds.

        A 2xx ack whose ``stored + duplicates`` covers the whole batch means every seq of it is
        held (newly stored or already there). Otherwise only seqs at or below ``acked_through``
        (held contiguously from 1) are provably held.
        """
        seqs = list(seqs)
        acked_through = int(ack.get("acked_through", 0))
        covered = int(ack.get("stored", -1)) + int(ack.get("duplicates", -1))
        if covered == len(seqs):
            return seqs
        return [s for s in seqs if s <= acked_through]

    def sync_once(self, outbox: OutboxLike, *, drift: DriftSpool | None = None) -> SyncReport:
        """Send pending results until the outbox has none (or ``max_batches``), then the
        spooled drift counts when ``drift`` is given.

        Raises SyncError when central refuses or stays unreachable; what the round did before
        is the error's ``report``. Unsynced rows and unsent drift counts are never touched.
        """
        report = SyncReport()
        try:
            if self.erasure is not None:
                self._apply_erasures(self.erasure, report)
            self._send_results(outbox, report)
            self._send_events(outbox, report)
            if report.marked:
                report.pruned = outbox.prune()
            if drift is not None and self.privacy is not None:
                self._send_private(drift, self.privacy, report)
            elif drift is not None:
                self._send_drift(drift, report)
        except SyncError as exc:
            report.backlog = _safe_backlog(outbox)
            raise exc.with_report(report) from exc
        report.backlog = _safe_backlog(outbox)
        return report

    def _send_results(self, outbox: OutboxLike, report: SyncReport) -> None:
        while self.max_batches is None or report.batches < self.max_batches:
            rows = outbox.pending(self.batch_size)
            if not rows:
                return
            epoch = outbox.epoch
            payload: dict[str, Any] = {"device_id": self.device_id, "epoch": epoch, "results": rows}
            backlog = _safe_backlog(outbox)
            if backlog is not None:
                payload["backlog"] = max(0, backlog - len(rows))
            seqs = [int(row["seq"]) for row in rows]
            outbox.record_sent(max(seqs))  # before sending: a lost reply may still be an ack
            try:
                ack = self.head_office.request_json(
                    "POST", BATCH_PATH, payload, compress=True, on_retry=report.count_retry
                )
            except SyncError as exc:
                if exc.status == 409:
                    self._alert(
                        outbox,
                        f"central refused batch seqs {seqs[0]}..{seqs[-1]} of outbox epoch {epoch} as a "
                        f"conflicting replay (it holds other content under a seq of it): {exc}; "
                        "nothing was marked synced",
                        status=409,
                    )
                raise
            if not isinstance(ack.get("acked_through"), int):
                raise SyncError(f"central's ack has no integer acked_through: {ack!r}")
            self._check_consistent(outbox, ack, epoch)
            held = self.acknowledged(seqs, ack)
            report.batches += 1
            report.sent += len(rows)
            report.stored += int(ack.get("stored", 0))
            report.duplicates += int(ack.get("duplicates", 0))
            report.acked_through = int(ack["acked_through"])
            if report.acked_through < self._highest_ack:
                log.warning(
                    "central's watermark went back from %d to %d: was its database restored?",
                    self._highest_ack,
                    report.acked_through,
                )
            self._highest_ack = max(self._highest_ack, report.acked_through)
            if held:
                report.marked += outbox.mark_synced(held)
            if len(held) < len(seqs):
                raise SyncError(
                    f"central acknowledged {len(held)} of {len(seqs)} results "
                    f"(ack {dict(ack)}); the rest stay in the outbox"
                )

    def _send_events(self, outbox: OutboxLike, report: SyncReport) -> None:
        """Tell central what the outbox recorded about itself (e.g. a quarantined file).

        An event central does not take (no such route yet, or refused) stays unreported and
        is offered again next round; only central being away stops the round."""
        for event in outbox.events(unreported_only=True):
            detail = dict(event["detail"])
            payload = {
                "kind": event["kind"],
                "epoch_old": detail.pop("epoch_old", None),
                "epoch_new": detail.pop("epoch_new", None),
                "at": event["at"],
                "detail": json.dumps(detail, sort_keys=True)[:_EVENT_DETAIL_CHARS],
            }
            path = EVENTS_PATH.format(device_id=self.device_id)
            try:
                self.head_office.request_json("POST", path, payload, on_retry=report.count_retry)
            except RetryableError:
                raise
            except SyncError as exc:
                log.warning(
                    "central did not take the %s event of %s; it stays recorded: %s", event["kind"], event["at"], exc
                )
                report.errors.append(str(exc))
                continue
            outbox.mark_events_reported([event["id"]])
            report.events_reported += 1

    def _check_consistent(self, outbox: OutboxLike, ack: Mapping[str, Any], epoch: str) -> None:
        """SyncError (after an ERROR log and a sync alert) when the ack cannot be about this
        outbox: it marks nothing then, whatever it says."""
        echoed = ack.get("epoch")
        if echoed is not None and echoed != epoch:
            self._alert(
                outbox,
                f"central acknowledged epoch {echoed!r} but this outbox's epoch is {epoch!r}: "
                "the ack is about another outbox file; nothing was marked synced",
            )
        sent = outbox.sent_through()
        if int(ack["acked_through"]) > sent:
            self._alert(
                outbox,
                f"central acknowledged through seq {ack['acked_through']} but this outbox (epoch {epoch}) "
                f"never sent a seq above {sent}: the ack is inconsistent with the outbox (a recreated "
                "outbox or a restored central?); nothing was marked synced",
            )
        if outbox.sync_alert() is not None:
            outbox.set_sync_alert(None)  # central and this outbox agree again

    @staticmethod
    def _alert(outbox: OutboxLike, message: str, *, status: int | None = None) -> NoReturn:
        log.error("%s", message)
        outbox.set_sync_alert(message)
        raise SyncError(message, status=status)

    def _send_drift(self, spool: DriftSpool, report: SyncReport) -> None:
        for pending in spool.pending():
            payload = drift_payload(self.device_id, pending.model_version, pending.histograms)
            try:
                answer = self.head_office.request_json("POST", DRIFT_PATH, payload, on_retry=report.count_retry)
            except SyncError as exc:
                if exc.status not in _DRIFT_NEVER_ACCEPTED:
                    raise
                log.warning("central will not take drift counts of %s, dropping them: %s", pending.model_version, exc)
                report.errors.append(str(exc))
                spool.discard(pending.ids)
                continue
            spool.discard(pending.ids)
            report.drift_reports += 1
            report.drift_rows += pending.rows
            report.drift_flagged = sorted({*report.drift_flagged, *answer.get("flagged", ())})

    def _apply_erasures(self, target: ErasureTarget, report: SyncReport) -> None:
        """Apply and confirm what central asks to erase; central without the route is fine."""
        path = ERASURES_PATH.format(device_id=self.device_id)
        try:
            answer = self.head_office.request_json("GET", path, on_retry=report.count_retry)
        except RetryableError:
            raise
        except SyncError as exc:
            if exc.status != 404:
                report.errors.append(str(exc))
                log.warning("could not read erasures from central: %s", exc)
            return
        for item in answer.get("erasures", ()):
            removed = erase_customer(target.outbox_path, str(item["customer_ref"]), target.customer_state_path)
            self.head_office.request_json("POST", f"{path}/{int(item['id'])}", removed, on_retry=report.count_retry)
            report.erasures_applied += 1
            log.info("erasure %s applied: %s", item["id"], removed)

    def _send_private(self, spool: DriftSpool, budget: PrivacyBudget, report: SyncReport) -> None:
        """Noise what is spooled (and the segment mix) into at most the day's remaining
        reports, then send every noised report not yet accepted."""
        ledger = PrivacyLedger(spool.path)
        day = utc_day()
        drift = {p.model_version: p for p in spool.pending()}
        mix, mix_through = ledger.segment_mix()
        for version in sorted({*drift, *mix}):
            if ledger.reports_made(day) >= budget.reports_per_day:
                report.private_held += 1
                log.info(
                    "privacy budget of %s spent (%d reports); counts of %s wait", day, budget.reports_per_day, version
                )
                continue
            pending = drift.get(version)
            payload = private_report(
                device_id=self.device_id,
                model_version=version,
                histograms=pending.histograms if pending is not None else {},
                segments=mix.get(version, {}),
                budget=budget,
                rng=self._rng,
                day=day,
            )
            ledger.commit_report(payload, day=day, drift_ids=pending.ids if pending else (), mix_through=mix_through)
        for payload in ledger.outgoing():
            try:
                answer = self.head_office.request_json("POST", PRIVATE_PATH, payload, on_retry=report.count_retry)
            except SyncError as exc:
                if exc.status == 409:  # central's budget for today is spent: send it tomorrow
                    report.private_held += 1
                    log.info("central holds this device's privacy budget spent: %s", exc)
                    continue
                if exc.status not in _DRIFT_NEVER_ACCEPTED:
                    raise
                log.warning(
                    "central will not take the noised report of %s, dropping it: %s", payload["model_version"], exc
                )
                report.errors.append(str(exc))
                ledger.delivered(str(payload["report_id"]))
                continue
            ledger.delivered(str(payload["report_id"]))
            report.private_reports += 1
            report.drift_flagged = sorted({*report.drift_flagged, *answer.get("flagged", ())})

    def report_drift(self, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        """POST one ``Runtime.drift_snapshot()`` now; central answers PSI per input."""
        histograms = {name: entry["counts"] for name, entry in snapshot["inputs"].items()}
        payload = drift_payload(self.device_id, str(snapshot["model_version"]), histograms)
        return self.head_office.request_json("POST", DRIFT_PATH, payload)

    def follow(
        self,
        outbox: OutboxLike,
        *,
        drift: DriftSpool | None = None,
        interval: float = 5.0,
        drift_interval: float = 900.0,
        stop: Callable[[], bool] = lambda: False,
        on_report: Callable[[SyncReport | SyncError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        pause: Callable[[float], object] | None = None,
    ) -> None:
        """Sync every ``interval`` s (backing off while central is away) until ``stop()``;
        drift counts go with the first round and then with one round every ``drift_interval`` s
        (a round that fails to deliver them leaves them due). ``pause`` waits between rounds
        (default: the head-office client's sleep); an ``Event.wait`` ends the wait as soon as
        the event that ``stop`` reads is set."""
        if interval <= 0 or drift_interval <= 0:
            raise ValueError(
                "The 'interval' and 'drift_interval' parameters of follow must be > 0. "
                f"Got {interval!r} and {drift_interval!r} instead."
            )
        failures = 0
        drift_due = clock()
        while not stop():
            with_drift = drift if drift is not None and clock() >= drift_due else None
            try:
                outcome: SyncReport | SyncError = self.sync_once(outbox, drift=with_drift)
                failures = 0
                delay = interval
                if with_drift is not None:
                    drift_due = clock() + drift_interval
            except SyncError as exc:
                outcome = exc
                failures += 1
                delay = max(interval, self.head_office.backoff(failures))
                log.warning("sync failed: %s", exc)
            if on_report is not None:
                on_report(outcome)
            if stop():
                return
            (pause or self.head_office.sleep)(delay)


def _safe_backlog(outbox: OutboxLike) -> int | None:
    try:
        return int(outbox.backlog())
    except Exception:  # noqa: BLE001 - a backlog figure is informative only
        return None
