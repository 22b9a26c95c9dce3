"""The outbox: every result is committed to a local SQLite file before it is returned.

Guarantees (docs/DESIGN.md §4-5):

* ``seq`` is per device and epoch, starts at 1, increases by one per committed result, never
  reuses a number: it is SQLite's rowid, assigned inside the transaction that stores the row
  as the largest stored seq plus one (pruning never deletes the newest row, so that is never
  reused). A result whose commit did not finish was never returned, so a crash leaves neither
  a gap nor a duplicate.
* ``durability="process"`` (default): WAL with ``synchronous=NORMAL``. A commit is in the
  WAL file in the OS page cache when ``append`` returns, so it survives the process being
  killed (SIGKILL, OOM, crash) but the last commits may be lost if the power fails.
  ``durability="power"``: ``synchronous=FULL``, the WAL is fsynced at every commit, which
  survives power loss and costs a disk flush per result (measured: see benchmarks/edge_latency.py).
* The raw customer id is never stored: callers pass ``customer_ref`` (Runtime computes it
  as HMAC-SHA256 with the deployment secret). Raw features are never stored either.
* Every outbox file has an **epoch** (32 random hex chars, made with the file, kept in
  ``meta``). Seqs are unique within an epoch only: a recreated or quarantined file starts a
  new epoch at seq 1, and every sync batch carries the epoch, so central never confuses the
  new file's seq 1 with the old one's (docs/DESIGN.md §5, issue 10 item 2). ``sent_through`` is the
  highest seq ever sent in this epoch: an ack above it is inconsistent and marks nothing.
  A file made before epochs keeps the legacy epoch ``""`` (central's name for the seqs it
  already holds from it); only new files get a random one.
* Rows are never deleted before they are synced. Past ``max_backlog`` unsynced rows the
  outbox logs a warning (once per crossing, then per further 10 % of max_backlog) and
  ``status()["backlog_exceeded"]`` is true; it keeps accepting results.
* Synced rows are pruned (:meth:`Outbox.prune`, run by each sync round) past a retention:
  older than ``retain_synced_days`` or beyond the newest ``retain_synced_rows`` synced ones
  (defaults in ``edge_runtime._settings``). Unsynced rows are never pruned, nor is the newest
  row (SQLite gives a new row max(seq) + 1, so keeping it means a seq is never reused).
  Below ``min_free_bytes`` of free space on the file's disk the outbox warns (at open and
  every ``DISK_CHECK_S`` from its helper thread; ``status()["disk_low"]``): a full disk makes
  ``append`` fail, and a result that is not stored is not returned either.
* A corrupt file (random bytes, a truncated copy, a damaged page: ``PRAGMA quick_check`` at
  open, which reads the whole file once) is never deleted and never a crash: it is renamed
  aside to ``<name>.corrupt-<UTC time>`` (with its ``-wal``/``-shm``), logged at ERROR, and
  a new file with a new epoch is started; the new file's ``events`` table records it
  (``outbox_quarantined``) until a sync has reported it to central.
* Drift counts live in the same file (issue 10 item 12), so a crash or restart does not lose
  them: a Runtime passes its ``DriftHistograms`` with each result, and every
  ``drift_checkpoint_rows`` results (default 100) the current counts are written to
  ``drift_state`` *in the transaction of that result*, so stored results and checkpointed
  counts agree. ``take_drift`` (what ``Runtime.drift_snapshot(reset=True)`` calls) resets the
  counts and clears the checkpoint under one lock; a new process moves the checkpoints of dead
  writers, and ``close`` its own counts, into the ``drift`` table, which is the spool
  ``edge_runtime.sync.DriftSpool`` sends from. A crash loses at most the counts of the last
  ``drift_checkpoint_rows - 1`` results (measured cost: see ``benchmarks/edge_latency.py``
  and the issue 10 note).
* The input counts of validation (how many records had missing, unknown or out-of-range
  inputs, and how many were refused: ``InputStats``) are checkpointed the same way, with the
  drift counts and at ``close``, into ``input_stats`` (one row per writer and model), so
  ``edge-runtime status`` in another process reads them (:meth:`Outbox.input_stats`, totals
  since the file was made). A new process folds the rows of dead writers into one.

Probabilities are stored as packed float64 in the model's class order (a few hundred
nanoseconds instead of a JSON dump per result); each (model_version, classes) pair is stored
once in ``models``.
"""

from __future__ import annotations

import array
import json
import logging
import os
import secrets
import shutil
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edge_runtime._settings import DEFAULT_MIN_FREE_MB, DEFAULT_RETAIN_SYNCED_DAYS, DEFAULT_RETAIN_SYNCED_ROWS

if TYPE_CHECKING:  # the outbox itself needs no numpy; Runtime hands it numpy label arrays
    import numpy as np

__all__ = ["Outbox"]

logger = logging.getLogger("edge_runtime")

SCHEMA_VERSION = 1
_SYNCHRONOUS = {"process": "NORMAL", "power": "FULL"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY,
    model_version TEXT NOT NULL,
    classes TEXT NOT NULL,
    UNIQUE (model_version, classes)
);
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY,
    customer_ref TEXT,
    segment TEXT NOT NULL,
    probabilities BLOB NOT NULL,
    model_id INTEGER NOT NULL REFERENCES models (id),
    classified_at_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS synced_above (seq INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS drift (
    id INTEGER PRIMARY KEY,
    model_version TEXT NOT NULL,
    rows INTEGER NOT NULL,
    snapshot TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drift_state (
    owner TEXT NOT NULL,
    model_version TEXT NOT NULL,
    snapshot TEXT NOT NULL,
    PRIMARY KEY (owner, model_version)
);
CREATE TABLE IF NOT EXISTS input_stats (
    owner TEXT NOT NULL,
    model_version TEXT NOT NULL,
    stats TEXT NOT NULL,
    PRIMARY KEY (owner, model_version)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    detail TEXT NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0
);
"""
# Sync state lives beside the results, not in them, so a commit of a new result writes one
# B-tree page (measured: 1 KiB pages and no index on the hot table halve the commit cost):
# meta.synced_through = every seq <= it is synced; synced_above = synced seqs beyond it
# (normally empty: head office acks contiguous runs, and the watermark absorbs them).

# Checkpoint the WAL from a helper thread, not inside a classify call, after this many
# appends (SQLite's own auto-checkpoint would stall one commit in ~1000 for milliseconds).
CHECKPOINT_EVERY = 2000
CHECKPOINT_POLL_S = 0.25
DISK_CHECK_S = 30.0  # free space is looked at this often (off the classify path)
DRIFT_CHECKPOINT_ROWS = 100  # results between two drift checkpoints (in a result's transaction)
QUARANTINED = "outbox_quarantined"
# SQLite's primary result codes for "this is not a (healthy) database file" (a lock, a missing
# permission or a full disk are other codes, and never a reason to move a file aside).
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def _checkpoint_loop(outbox: weakref.ref[Outbox], closed: threading.Event, db: sqlite3.Connection) -> None:
    """Copy the WAL back into the database now and then, off the classify path.

    Holds the Outbox only weakly: an outbox dropped without close() ends its thread too.
    """
    done = 0
    disk_checked = time.monotonic()
    try:
        while not closed.wait(CHECKPOINT_POLL_S):
            box = outbox()
            if box is None:
                break
            appended = box._appended
            if time.monotonic() - disk_checked >= DISK_CHECK_S:
                disk_checked = time.monotonic()
                box.check_disk()
            del box
            if appended - done >= CHECKPOINT_EVERY:
                done = appended
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error as exc:  # never fatal: the WAL only grows until the next one
        logger.warning("outbox WAL checkpoint failed: %s", exc)
    finally:
        db.close()


class DriftCounts(Protocol):
    """What the outbox needs of ``edge_runtime.drift.DriftHistograms``."""

    model_version: str

    def snapshot(self, *, reset: bool = False) -> dict[str, Any]: ...


def connect(path: str | Path, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection to an outbox file with its pragmas, the tables created if missing (the
    drift spool of ``edge_runtime.sync`` opens the file this way too)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    db.execute("PRAGMA page_size=1024")  # only takes effect on a new, empty file
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=10000")
    db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does it
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    return db


def counts_only(snapshot: Mapping[str, Any]) -> str:
    """A drift snapshot as stored: counts per input, no bin edges or category names (those are
    the manifest's; the file keeps numbers only)."""
    inputs = {name: {"counts": list(entry["counts"])} for name, entry in snapshot["inputs"].items()}
    kept = {k: snapshot[k] for k in ("model_version", "rows", "since", "until") if k in snapshot}
    return json.dumps({**kept, "inputs": inputs}, sort_keys=True)


def merge_input_stats(total: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Add ``more`` (an ``InputStats.snapshot()``) into ``total``: counts add, per-input
    counts add per input (the shape is the snapshot's, whatever counters it has)."""
    for key, value in more.items():
        if isinstance(value, Mapping):
            into = total.setdefault(key, {})
            for name, n in value.items():
                into[name] = into.get(name, 0) + int(n)
        elif isinstance(value, int) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
    return total


def spool_snapshot(db: sqlite3.Connection, snapshot: Mapping[str, Any]) -> int | None:
    """Insert one drift snapshot into the spool (inside the caller's transaction); its id."""
    if not snapshot.get("rows") or not snapshot.get("inputs"):
        return None
    cursor = db.execute(
        "INSERT INTO drift (model_version, rows, snapshot) VALUES (?, ?, ?)",
        (str(snapshot["model_version"]), int(snapshot["rows"]), counts_only(snapshot)),
    )
    return cursor.lastrowid


def _owner_alive(owner: str) -> bool:
    pid = int(owner.split(":", 1)[0]) if owner.split(":", 1)[0].isdigit() else -1
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return type(exc) is sqlite3.DatabaseError  # no code: OperationalError & co. are not corruption


# The epoch of an outbox made before epochs existed (central's name for it, too).
LEGACY_EPOCH = ""


def new_epoch() -> str:
    """A fresh outbox epoch: 32 random hex characters (128 bits, never guessed or repeated)."""
    return secrets.token_hex(16)


def iso_utc(epoch_us: int) -> str:
    """ISO-8601 UTC with millisecond precision and a 'Z': ``2026-11-26T12:00:00.123Z``."""
    moment = datetime.fromtimestamp(epoch_us / 1e6, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Outbox:
    """SQLite (WAL) store of results awaiting sync. Thread-safe; one writer process per file."""

    epoch: str  # this file's epoch (set when the file is opened or made)

    def __init__(
        self,
        path: str | Path,
        *,
        device_id: str,
        durability: str = "process",
        max_backlog: int = 1_000_000,
        retain_synced_rows: int = DEFAULT_RETAIN_SYNCED_ROWS,
        retain_synced_days: float = DEFAULT_RETAIN_SYNCED_DAYS,
        min_free_bytes: int = int(DEFAULT_MIN_FREE_MB * 1e6),
        drift_checkpoint_rows: int = DRIFT_CHECKPOINT_ROWS,
    ) -> None:
        if durability not in _SYNCHRONOUS:
            raise ValueError(
                f"The 'durability' parameter of Outbox must be one of {tuple(_SYNCHRONOUS)}. "
                f"Got {durability!r} instead."
            )
        if not isinstance(device_id, str) or not device_id:
            raise ValueError(
                f"The 'device_id' parameter of Outbox must be a non-empty string. Got {device_id!r} instead."
            )
        if max_backlog < 1:
            raise ValueError(f"The 'max_backlog' parameter of Outbox must be >= 1. Got {max_backlog!r} instead.")
        if retain_synced_rows < 0 or not retain_synced_days > 0 or min_free_bytes < 0:
            raise ValueError(
                "The retention parameters of Outbox must be retain_synced_rows >= 0, retain_synced_days > 0 "
                f"and min_free_bytes >= 0. Got {retain_synced_rows!r}, {retain_synced_days!r} and "
                f"{min_free_bytes!r} instead."
            )
        self.path = Path(path)
        self.device_id = device_id
        self.durability = durability
        self.max_backlog = max_backlog
        self.retain_synced_rows = retain_synced_rows
        self.retain_synced_days = retain_synced_days
        self.min_free_bytes = min_free_bytes
        if drift_checkpoint_rows < 1:
            raise ValueError(
                f"The 'drift_checkpoint_rows' parameter of Outbox must be >= 1. Got {drift_checkpoint_rows!r} instead."
            )
        self.drift_checkpoint_rows = drift_checkpoint_rows
        self._drift: DriftCounts | None = None
        self._drift_unsaved = 0
        # What the writer's validation counted so far, as (model_version, InputStats snapshot):
        # Runtime sets it; checkpointed with the drift counts and at close.
        self.input_stats_source: Callable[[], tuple[str, Mapping[str, Any]]] | None = None
        self._owner = f"{os.getpid()}:{secrets.token_hex(4)}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._disk_low = False
        quarantine = self._quarantine_if_corrupt()
        self._db = self._connect()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._check_meta()
                self._recover_drift()
                self._fold_input_stats()
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        if quarantine is not None:
            self.add_event(QUARANTINED, {**quarantine, "epoch_new": self.epoch})
        self.check_disk()
        self._models: dict[tuple[str, tuple[str, ...]], int] = {}
        self._classes_by_id: dict[int, tuple[str, tuple[str, ...]]] = {}
        self._backlog = self._count_backlog()
        self._warned_at = 0
        self._next_check = 0
        self._appended = 0
        self._closed = threading.Event()
        self._checkpointer = threading.Thread(
            target=_checkpoint_loop,
            args=(weakref.ref(self), self._closed, self._connect()),
            name=f"outbox-checkpoint-{self.path.name}",
            daemon=True,
        )
        self._checkpointer.start()
        self._insert_sql = (
            "INSERT INTO results (seq, customer_ref, segment, probabilities, model_id, "
            "classified_at_us) VALUES (NULL, ?, ?, ?, ?, ?)"
        )

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, _SYNCHRONOUS[self.durability])

    def _recover_drift(self) -> None:
        """Spool the drift checkpoints of writers that died (inside the open transaction)."""
        rows = self._db.execute("SELECT owner, model_version, snapshot FROM drift_state").fetchall()
        for owner, model_version, snapshot in rows:
            if _owner_alive(owner):
                continue
            spool_snapshot(self._db, json.loads(snapshot))
            self._db.execute("DELETE FROM drift_state WHERE owner = ? AND model_version = ?", (owner, model_version))
            logger.info(
                "outbox %s: recovered the drift counts of %s (writer %s ended)", self.path, model_version, owner
            )

    def _fold_input_stats(self) -> None:
        """Fold the input counts of writers that ended into the row of owner ``""`` (inside the
        open transaction), so the table holds one row per model and live writer."""
        rows = self._db.execute("SELECT owner, model_version, stats FROM input_stats WHERE owner != ''").fetchall()
        for owner, model_version, stats in rows:
            if _owner_alive(owner):
                continue
            old = self._db.execute(
                "SELECT stats FROM input_stats WHERE owner = '' AND model_version = ?", (model_version,)
            ).fetchone()
            total = merge_input_stats(json.loads(old[0]) if old else {}, json.loads(stats))
            self._db.execute(
                "INSERT OR REPLACE INTO input_stats (owner, model_version, stats) VALUES ('', ?, ?)",
                (model_version, json.dumps(total, sort_keys=True)),
            )
            self._db.execute("DELETE FROM input_stats WHERE owner = ? AND model_version = ?", (owner, model_version))

    def _save_input_stats(self, model_version: str, stats: Mapping[str, Any]) -> None:
        """This writer's counts so far for ``model_version`` (lock held; the caller's
        transaction if one is open)."""
        self._db.execute(
            "INSERT OR REPLACE INTO input_stats (owner, model_version, stats) VALUES (?, ?, ?)",
            (self._owner, model_version, json.dumps(dict(stats), sort_keys=True)),
        )

    def save_input_stats(self, model_version: str, stats: Mapping[str, Any]) -> None:
        """Checkpoint this writer's input counts for ``model_version`` now (Runtime calls it
        when it stops serving a model, so that model's last counts are kept)."""
        with self._lock:
            self._save_input_stats(model_version, stats)

    def input_stats(self) -> dict[str, dict[str, Any]]:
        """Input counts per model version, summed over every writer since the file was made
        (as of each writer's last checkpoint), read from the file."""
        with self._lock:
            rows = self._db.execute("SELECT model_version, stats FROM input_stats ORDER BY model_version").fetchall()
        totals: dict[str, dict[str, Any]] = {}
        for model_version, stats in rows:
            merge_input_stats(totals.setdefault(model_version, {}), json.loads(stats))
        return totals

    def _quarantine_if_corrupt(self) -> dict[str, Any] | None:
        """Move a corrupt file (and its -wal/-shm) aside, never deleting it; what was done."""
        if not self.path.exists():
            return None
        problem, old_epoch = None, None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            return self._move_aside(str(exc), None)
        try:
            db.execute("PRAGMA busy_timeout=10000")
            rows = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
            if rows != ["ok"]:
                problem = "; ".join(rows)[:500]
            else:
                try:
                    found = db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
                    old_epoch = None if found is None else str(found[0])
                except sqlite3.OperationalError:  # no meta table yet: not an outbox we made
                    pass
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise
            problem = str(exc)
        finally:
            db.close()
        return None if problem is None else self._move_aside(problem, old_epoch)

    def _move_aside(self, problem: str, old_epoch: str | None) -> dict[str, Any]:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm", "-journal"):
            source = self.path.with_name(self.path.name + suffix)
            if source.exists():
                os.replace(source, target.with_name(target.name + suffix))
        logger.error(
            "outbox %s is corrupt (%s): moved aside to %s (kept, not deleted); starting a new outbox with a "
            "new epoch. Unsynced results in the old file are not sent: recover them from %s if they matter",
            self.path,
            problem,
            target.name,
            target.name,
        )
        return {"quarantined_as": str(target), "problem": problem, "epoch_old": old_epoch}

    def _check_meta(self) -> None:
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not rows:
            self.epoch = new_epoch()
            self._db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("device_id", self.device_id),
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("synced_through", "0"),
                    ("sent_through", "0"),
                    ("epoch", self.epoch),
                ],
            )
            return
        if rows.get("device_id") != self.device_id:
            self._db.execute("ROLLBACK")
            raise ValueError(
                f"outbox {str(self.path)!r} belongs to device {rows.get('device_id')!r}, "
                f"not {self.device_id!r}: seq numbers are per device, use another file"
            )
        if rows.get("schema_version") != str(SCHEMA_VERSION):
            self._db.execute("ROLLBACK")
            raise ValueError(
                f"outbox {str(self.path)!r} has schema version {rows.get('schema_version')!r}; "
                f"this runtime reads {SCHEMA_VERSION}"
            )
        # A file made before epochs existed keeps the legacy epoch "": central stored its seqs
        # under that one, so resending them after the upgrade is a duplicate, not a new result.
        # Anything it holds may have been sent already (a reply lost before the upgrade).
        self.epoch = rows.get("epoch", LEGACY_EPOCH)
        self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", (self.epoch,))
        self._db.execute(
            "INSERT OR IGNORE INTO meta (key, value) SELECT 'sent_through', CAST(COALESCE(MAX(seq), 0) AS TEXT) "
            "FROM results"
        )

    # ------------------------------------------------------------------ writing
    def _model_id(self, model_version: str, classes: tuple[str, ...]) -> int:
        key = (model_version, classes)
        model_id = self._models.get(key)
        if model_id is None:
            encoded = json.dumps(list(classes))
            self._db.execute(
                "INSERT OR IGNORE INTO models (model_version, classes) VALUES (?, ?)",
                (model_version, encoded),
            )
            model_id = self._db.execute(
                "SELECT id FROM models WHERE model_version = ? AND classes = ?",
                (model_version, encoded),
            ).fetchone()[0]
            self._models[key] = model_id
        return model_id

    def append(
        self,
        *,
        segment: str,
        probabilities: Mapping[str, float],
        model_version: str,
        customer_ref: str | None = None,
        classified_at_us: int | None = None,
    ) -> int:
        """Store one result (committed when this returns) and return its ``seq``."""
        return self.append_values(
            segment,
            tuple(probabilities),
            list(probabilities.values()),
            model_version,
            customer_ref,
            classified_at_us,
        )

    def append_values(
        self,
        segment: str,
        classes: tuple[str, ...],
        values: Sequence[float],
        model_version: str,
        customer_ref: str | None = None,
        classified_at_us: int | None = None,
        *,
        drift: DriftCounts | None = None,
    ) -> int:
        """``append`` with probabilities as values in ``classes`` order (Runtime's fast path).

        ``drift``: the histograms that counted this result; checkpointed with it every
        ``drift_checkpoint_rows`` results."""
        blob = array.array("d", values).tobytes()
        stamp = time.time_ns() // 1000 if classified_at_us is None else classified_at_us
        with self._lock:
            model_id = self._models.get((model_version, classes))
            if model_id is None:
                model_id = self._model_id(model_version, classes)
            if drift is not None and self._drift_due(drift, 1):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    seq = self._db.execute(self._insert_sql, (customer_ref, segment, blob, model_id, stamp)).lastrowid
                    self._checkpoint_drift(drift)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            else:
                # One statement in autocommit mode = one transaction: committed (and, with
                # durability="power", fsynced) before execute returns. seq NULL = SQLite's
                # max(seq) + 1 under the write lock, so even two writer processes cannot collide.
                seq = self._db.execute(self._insert_sql, (customer_ref, segment, blob, model_id, stamp)).lastrowid
            assert seq is not None
            self._appended += 1
            self._backlog += 1
            if self._backlog > self.max_backlog:
                self._over_backlog()
        return seq

    def append_many(
        self,
        segments: Sequence[str] | np.ndarray,
        classes: tuple[str, ...],
        probabilities: Any,
        model_version: str,
        customer_refs: Sequence[str | None] | None = None,
        *,
        drift: DriftCounts | None = None,
    ) -> list[int]:
        """Store a batch in one transaction; returns the seqs (contiguous). ``drift`` as in
        :meth:`append_values`."""
        n = len(segments)
        if n == 0:
            return []
        stamp = time.time_ns() // 1000
        refs = customer_refs if customer_refs is not None else [None] * n
        with self._lock:
            model_id = self._model_id(model_version, classes)
            rows = (
                (refs[i], str(segments[i]), array.array("d", probabilities[i]).tobytes(),
                 model_id, stamp)
                for i in range(n)
            )  # fmt: skip
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(self._insert_sql, rows)
                last = self._db.execute("SELECT MAX(seq) FROM results").fetchone()[0]
                if drift is not None and self._drift_due(drift, n):
                    self._checkpoint_drift(drift)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            first = last - n + 1
            self._appended += n
            self._backlog += n
            if self._backlog > self.max_backlog:
                self._over_backlog()
        return list(range(first, first + n))

    # ------------------------------------------------------------------ drift counts
    def _drift_due(self, drift: DriftCounts, n: int) -> bool:
        """Count ``n`` results of ``drift``; True when a checkpoint is due (lock held)."""
        if drift is not self._drift:
            if self._drift is not None:  # a model swap: the old model's counts go to the spool
                self._spool_taken(self._drift)
            self._drift, self._drift_unsaved = drift, 0
        self._drift_unsaved += n
        return self._drift_unsaved >= self.drift_checkpoint_rows

    def _checkpoint_drift(self, drift: DriftCounts) -> None:
        """Write the current counts to drift_state (inside the caller's transaction)."""
        snapshot = drift.snapshot()
        self._db.execute(
            "INSERT OR REPLACE INTO drift_state (owner, model_version, snapshot) VALUES (?, ?, ?)",
            (self._owner, str(snapshot["model_version"]), counts_only(snapshot)),
        )
        if self.input_stats_source is not None:
            self._save_input_stats(*self.input_stats_source())
        self._drift_unsaved = 0

    def take_drift(self, drift: DriftCounts) -> dict[str, Any]:
        """``drift.snapshot(reset=True)`` and forget its checkpoint, atomically: the counts
        handed out are never recovered again after a crash."""
        with self._lock:
            snapshot = drift.snapshot(reset=True)
            self._db.execute(
                "DELETE FROM drift_state WHERE owner = ? AND model_version = ?",
                (self._owner, str(snapshot["model_version"])),
            )
            if drift is self._drift:
                self._drift_unsaved = 0
        return snapshot

    def _spool_taken(self, drift: DriftCounts) -> None:
        """Move ``drift``'s counts into the spool, clearing its checkpoint (lock held)."""
        snapshot = drift.snapshot(reset=True)
        savepoint = not self._db.in_transaction
        if savepoint:
            self._db.execute("BEGIN IMMEDIATE")
        try:
            spool_snapshot(self._db, snapshot)
            self._db.execute(
                "DELETE FROM drift_state WHERE owner = ? AND model_version = ?",
                (self._owner, str(snapshot["model_version"])),
            )
            if savepoint:
                self._db.execute("COMMIT")
        except BaseException:
            if savepoint:
                self._db.execute("ROLLBACK")
            raise

    def _over_backlog(self) -> None:
        # The in-memory count may be stale if another process marked rows synced: recount
        # (cheap: last seq - watermark - the few synced seqs above it), every 1 % of max_backlog.
        if self._backlog < self._next_check:
            return
        self._backlog = self._count_backlog()
        self._next_check = self._backlog + max(1, self.max_backlog // 100)
        if self._backlog <= self.max_backlog:
            self._warned_at = 0
            return
        if self._warned_at == 0 or self._backlog >= self._warned_at + max(1, self.max_backlog // 10):
            self._warned_at = self._backlog
            logger.warning(
                "outbox %s holds %d unsynced results, more than max_backlog=%d: sync is not "
                "keeping up; nothing is dropped, but the file keeps growing",
                self.path,
                self._backlog,
                self.max_backlog,
            )

    # ------------------------------------------------------------------ syncing
    def pending(self, limit: int) -> list[dict[str, Any]]:
        """Oldest unsynced results first, at most ``limit``, in the sync protocol's shape."""
        if limit < 1:
            raise ValueError(f"The 'limit' parameter of Outbox.pending must be >= 1. Got {limit!r}.")
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, customer_ref, segment, probabilities, model_id, classified_at_us "
                "FROM results WHERE seq > ? AND seq NOT IN (SELECT seq FROM synced_above) "
                "ORDER BY seq LIMIT ?",
                (self._synced_through(), limit),
            ).fetchall()
            out = []
            for seq, ref, segment, blob, model_id, stamp in rows:
                model_version, classes = self._model(model_id)
                values = array.array("d")
                values.frombytes(blob)
                out.append(
                    {
                        "seq": seq,
                        "customer_ref": ref,
                        "segment": segment,
                        "probabilities": dict(zip(classes, values.tolist(), strict=True)),
                        "model_version": model_version,
                        "classified_at": iso_utc(stamp),
                    }
                )
        return out

    def _model(self, model_id: int) -> tuple[str, tuple[str, ...]]:
        found = self._classes_by_id.get(model_id)
        if found is None:
            version, classes = self._db.execute(
                "SELECT model_version, classes FROM models WHERE id = ?", (model_id,)
            ).fetchone()
            found = (version, tuple(json.loads(classes)))
            self._classes_by_id[model_id] = found
        return found

    def mark_synced(self, seqs: Iterable[int]) -> int:
        """Mark results as delivered (idempotent; unknown seqs ignored); returns how many
        changed state. Rows stay in the file: marking never deletes."""
        wanted = sorted({int(s) for s in seqs})
        if not wanted:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                through = self._synced_through()
                last = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM results").fetchone()[0]
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO synced_above (seq) VALUES (?)",
                    [(s,) for s in wanted if through < s <= last],
                )
                changed = self._db.total_changes - before
                # Advance the watermark over the contiguous run and forget those entries.
                run = through
                for (seq,) in self._db.execute("SELECT seq FROM synced_above WHERE seq > ? ORDER BY seq", (through,)):
                    if seq != run + 1:
                        break
                    run = seq
                if run != through:
                    self._db.execute("DELETE FROM synced_above WHERE seq <= ?", (run,))
                    self._db.execute("UPDATE meta SET value = ? WHERE key = 'synced_through'", (str(run),))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._backlog = max(0, self._backlog - changed)
        return changed

    def _synced_through(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'synced_through'").fetchone()
        return int(row[0])

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str | None) -> None:
        with self._lock:
            if value is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def record_sent(self, seq: int) -> None:
        """Remember that seqs up to ``seq`` of this epoch were sent (before sending them), so
        an ack claiming more than was ever sent is recognised as inconsistent."""
        with self._lock:
            self._db.execute(
                "UPDATE meta SET value = MAX(CAST(value AS INTEGER), ?) WHERE key = 'sent_through'", (int(seq),)
            )

    def sent_through(self) -> int:
        """The highest seq ever sent to central in this epoch (0: none)."""
        with self._lock:
            return int(self._meta("sent_through") or 0)

    def sync_alert(self) -> str | None:
        """What stopped the last sync from marking results (a 409 or an inconsistent ack)."""
        with self._lock:
            return self._meta("sync_alert")

    def set_sync_alert(self, message: str | None) -> None:
        """Keep (or clear, with None) the sync alert ``edge-runtime status`` shows."""
        self._set_meta("sync_alert", message)

    # ------------------------------------------------------------------ retention
    def prune(self, *, now_us: int | None = None) -> int:
        """Delete synced results past the retention (age, then count); returns how many.

        Only rows at or below the synced watermark are candidates, never the newest row."""
        now = time.time_ns() // 1000 if now_us is None else now_us
        cutoff = now - int(self.retain_synced_days * 86_400 * 1_000_000)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                through = self._synced_through()
                last = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM results").fetchone()[0]
                limit = min(through, int(last) - 1)
                before = self._db.total_changes
                self._db.execute("DELETE FROM results WHERE seq <= ? AND classified_at_us < ?", (limit, cutoff))
                self._db.execute("DELETE FROM results WHERE seq <= ?", (min(limit, through - self.retain_synced_rows),))
                pruned = self._db.total_changes - before
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if pruned:
            logger.info("outbox %s: pruned %d synced results past the retention", self.path, pruned)
        return pruned

    def disk_free_bytes(self) -> int | None:
        try:
            return int(shutil.disk_usage(self.path.parent).free)
        except OSError:
            return None

    def check_disk(self) -> bool:
        """Warn (once per crossing) when free space is below ``min_free_bytes``; True if low."""
        free = self.disk_free_bytes()
        low = free is not None and free < self.min_free_bytes
        if low and not self._disk_low:
            logger.warning(
                "outbox %s: only %.1f MB free on its disk (warning below %.1f MB); when the disk is full, "
                "classification stops (a result that cannot be stored is not returned). Free space, or sync "
                "so synced results can be pruned",
                self.path,
                (free or 0) / 1e6,
                self.min_free_bytes / 1e6,
            )
        self._disk_low = low
        return low

    # ------------------------------------------------------------------ events
    def add_event(self, kind: str, detail: Mapping[str, Any]) -> int:
        """Record something head office must hear about (e.g. a quarantined outbox)."""
        stamp = iso_utc(time.time_ns() // 1000)
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO events (kind, at, detail) VALUES (?, ?, ?)",
                (kind, stamp, json.dumps(dict(detail), sort_keys=True)),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def events(self, *, unreported_only: bool = False) -> list[dict[str, Any]]:
        """Recorded events, oldest first: ``{"id", "kind", "at", "detail", "reported"}``."""
        query = "SELECT id, kind, at, detail, reported FROM events"
        if unreported_only:
            query += " WHERE reported = 0"
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id").fetchall()
        return [{"id": i, "kind": k, "at": at, "detail": json.loads(d), "reported": bool(r)} for i, k, at, d, r in rows]

    def mark_events_reported(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._db.executemany("UPDATE events SET reported = 1 WHERE id = ?", [(int(i),) for i in ids])

    # ------------------------------------------------------------------ reading state
    def _count_backlog(self) -> int:
        last = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM results").fetchone()[0]
        above = self._db.execute("SELECT COUNT(*) FROM synced_above").fetchone()[0]
        return int(last) - self._synced_through() - int(above)

    def backlog(self) -> int:
        """Unsynced results (counted in the file, so syncs by another process are seen)."""
        with self._lock:
            self._backlog = self._count_backlog()
            return self._backlog

    def last_seq(self) -> int:
        """The highest seq stored (0 when empty), read from the file."""
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM results").fetchone()[0])

    def status(self) -> dict[str, Any]:
        backlog = self.backlog()
        return {
            "path": str(self.path),
            "device_id": self.device_id,
            "epoch": self.epoch,
            "sync_alert": self.sync_alert(),
            "durability": self.durability,
            "last_seq": self.last_seq(),
            "backlog": backlog,
            "max_backlog": self.max_backlog,
            "backlog_exceeded": backlog > self.max_backlog,
            "disk_free_bytes": self.disk_free_bytes(),
            "disk_low": self._disk_low,
            "events_unreported": self.events(unreported_only=True),
        }

    def close(self) -> None:
        """Spool the drift counts not handed out yet, then close the file."""
        self._closed.set()
        if self._checkpointer.is_alive() and self._checkpointer is not threading.current_thread():
            self._checkpointer.join(timeout=10)
        with self._lock:
            try:
                if self.input_stats_source is not None:
                    self._save_input_stats(*self.input_stats_source())
                if self._drift is not None:
                    self._spool_taken(self._drift)
                    self._drift = None
            except sqlite3.Error as exc:  # a full disk: the checkpoint (if any) is recovered later
                logger.warning("outbox %s: drift and input counts not saved at close: %s", self.path, exc)
            finally:
                self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Outbox({str(self.path)!r}, device_id={self.device_id!r}, durability={self.durability!r})"
