"""``Runtime``: a Classifier plus the outbox and drift histograms (what the CLI and sync use).

``classify(record)`` validates, classifies, counts the row in the drift histograms, and
commits the result to the outbox *before* returning it with its ``seq``: whatever a caller
was told is in the outbox, even if the process is killed the next instant.

Models are replaced with ``swap_model`` (verify -> hash -> self-test first; a refused model
leaves the running one in place) and the previous one is kept in memory for ``rollback``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edge_runtime.classifier import BatchResult, Classifier, PublicKey, Result
from edge_runtime.customer_state import CustomerState, FeatureProgram, NoFeatureProgramError
from edge_runtime.drift import DriftHistograms
from edge_runtime.exceptions import ModelLoadError, OutboxError, SchemaError
from edge_runtime.outbox import Outbox
from edge_runtime.outcomes import OutcomeSpool
from edge_runtime.state_snapshot import SECRET_CHECK_ID, SnapshotError, SnapshotInfo, install_snapshot

__all__ = ["CustomerResult", "Observed", "Runtime", "customer_ref_for", "customer_state_path_for"]

logger = logging.getLogger("edge_runtime")

_new_result = tuple.__new__  # skips NamedTuple's keyword-handling __new__ on the hot path
MIN_SECRET_BYTES = 16
CUSTOMER_REF_HEX_CHARS = 32  # 128 bits of HMAC-SHA256: unlinkable without the secret


def customer_ref_for(secret: str | bytes, raw_id: str | int) -> str:
    """The pseudonym a Runtime with ``secret`` stores for ``raw_id`` (``Runtime.customer_ref``).

    Head office builds a store's customer-state snapshot with it, so the snapshot's customers
    are the ones the till looks up; it needs the deployment's secret for that.
    """
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    raw = str(int(raw_id)) if isinstance(raw_id, int) and not isinstance(raw_id, bool) else raw_id
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"a customer id must be a non-empty string or an integer. Got {raw_id!r} instead.")
    digest = hmac.new(key, raw.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return digest[:CUSTOMER_REF_HEX_CHARS]


def customer_state_path_for(outbox_path: str | Path) -> Path:
    """Where a Runtime keeps the till's customer state by default: beside the outbox
    (``outbox.db`` -> ``outbox.customers.sqlite``), so one device folder holds both."""
    path = Path(outbox_path)
    return path.with_name(f"{path.stem}.customers.sqlite")


class Observed(NamedTuple):
    """What ``Runtime.observe`` did with one till event (``ObserveResult`` plus the customer)."""

    customer_ref: str
    applied: int  # lines applied now
    duplicates: int  # lines applied before (a replayed event): not counted twice
    skipped: int  # lines the factory's cleaning drops (zero quantity or price)

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()


class CustomerResult(NamedTuple):
    """A customer's segment from the till state: the Result (in the outbox, with its seq) and
    the input record it was computed from (recency, tenure and dormancy at ``at``)."""

    result: Result
    record: dict[str, float | str | None]
    customer_ref: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.result.to_dict(), "customer_ref": self.customer_ref, "record": self.record}


class Runtime:
    """Classify with a durable outbox. Thread-safe.

    ``model``: an artifact folder (verified with ``public_key``) or a loaded Classifier.
    ``secret``: the per-deployment key of the customer pseudonym
    (``customer_ref = HMAC-SHA256(secret, raw id)[:32 hex]``); the raw id is never stored.
    ``durability``: ``"process"`` (survives a killed process) or ``"power"`` (survives power
    loss, one fsync per result).
    ``customer_state_path``: the till's customer feature state (``observe`` /
    ``classify_customer``; default :func:`customer_state_path_for` the outbox), opened on
    first use with the model's ``feature_program``.
    ``contract``: the input contract of the models it loads, ``"strict"`` (default) or
    ``"lenient"`` (``Classifier.load``).
    """

    def __init__(
        self,
        model: str | Path | Classifier,
        *,
        outbox_path: str | Path,
        device_id: str,
        secret: str | bytes,
        public_key: PublicKey | None = None,
        durability: str = "process",
        max_backlog: int = 1_000_000,
        out_of_range: str = "count",
        outbox_options: Mapping[str, Any] | None = None,
        customer_state_path: str | Path | None = None,
        contract: str = "strict",
    ) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        if not isinstance(key, bytes) or len(key) < MIN_SECRET_BYTES:
            got = f"{len(key)} bytes" if isinstance(key, bytes) else repr(type(key).__name__)
            raise ValueError(
                f"The 'secret' parameter of Runtime must be at least {MIN_SECRET_BYTES} bytes "
                f"(a per-deployment random key). Got {got} instead."
            )
        self._hmac = hmac.new(key, digestmod=hashlib.sha256)
        self.public_key = public_key
        self.out_of_range = out_of_range
        self.contract = contract  # the input contract of every model this runtime loads
        if isinstance(model, Classifier):
            classifier = model
        else:
            classifier = Classifier.load(model, public_key, out_of_range=out_of_range, contract=contract)
        self._active = (classifier, DriftHistograms(classifier.manifest))
        self._previous: Classifier | None = None
        self.outbox = Outbox(
            outbox_path, device_id=device_id, durability=durability, max_backlog=max_backlog, **(outbox_options or {})
        )  # outbox_options: retention, disk and drift checkpoint keywords of Outbox
        self.outbox.input_stats_source = self._input_stats_now  # persisted for `edge-runtime status`
        self.device_id = device_id
        self.durability = durability
        self.customer_state_path = (
            customer_state_path_for(outbox_path) if customer_state_path is None else Path(customer_state_path)
        )
        self._state: CustomerState | None = None
        self._state_lock = threading.Lock()
        self._ref_of = self.customer_ref  # bound once: the state calls it per event

    # ------------------------------------------------------------------ models
    @property
    def classifier(self) -> Classifier:
        return self._active[0]

    @property
    def model_version(self) -> str:
        return self._active[0].model_version

    @property
    def previous_artifact_dir(self) -> Path | None:
        return None if self._previous is None else self._previous.artifact_dir

    def swap_model(self, artifact_dir: str | Path, public_key: PublicKey | None = None) -> Classifier:
        """Load, verify and self-test a new model, then serve it; keep the current one for
        ``rollback``. On any ModelLoadError the running model stays and the error is raised."""
        key = public_key if public_key is not None else self.public_key
        try:
            new = Classifier.load(artifact_dir, key, out_of_range=self.out_of_range, contract=self.contract)
        except ModelLoadError as exc:
            logger.error("refused model %s (keeping %s): %s", artifact_dir, self.model_version, exc)
            raise
        self._install(new)
        return new

    def rollback(self) -> Classifier:
        """Serve the previous model again (the current one becomes the previous)."""
        previous = self._previous
        if previous is None:
            raise ModelLoadError("no previous model to roll back to")
        self._install(previous)
        return previous

    def _input_stats_now(self) -> tuple[str, dict[str, Any]]:
        """The served model's version and its validation counts (what the outbox checkpoints)."""
        classifier = self._active[0]
        return classifier.model_version, classifier.input_stats

    def _install(self, classifier: Classifier) -> None:
        old = self._active[0]
        self.outbox.save_input_stats(old.model_version, old.input_stats)  # its counts to date stay readable
        # One tuple assignment: a concurrent classify sees the old pair or the new pair.
        # Drift histograms restart with the new model's reference bins.
        self._active = (classifier, DriftHistograms(classifier.manifest))
        self._previous = old
        if self._state is not None and self._state.program != _program_of(classifier):
            with self._state_lock:  # the state follows the served model's program (reopened on use)
                state, self._state = self._state, None
                if state is not None:
                    state.close()
        logger.info("serving model %s (previous %s)", classifier.model_version, old.model_version)

    # ------------------------------------------------------------------ classification
    def _customer_ref(self, record: Mapping[str, Any], id_field: str | None) -> str | None:
        if id_field is None:
            return None
        raw = record.get(id_field)
        if raw is None or raw == "":
            return None
        if isinstance(raw, (int, np.integer)) and not isinstance(raw, (bool, np.bool_)):
            raw = str(int(raw))
        elif not isinstance(raw, str):
            raise SchemaError(id_field, raw, "must be a string or an integer customer id")
        mac = self._hmac.copy()
        mac.update(raw.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()[:CUSTOMER_REF_HEX_CHARS]

    def customer_ref(self, raw_id: str | int) -> str:
        """The pseudonym this deployment stores for a raw customer id."""
        ref = self._customer_ref({"id": raw_id}, "id")
        if ref is None:
            raise ValueError("a customer id must be non-empty")
        return ref

    def classify(self, record: Mapping[str, Any], *, explain: bool = False) -> Result:
        """Validate, classify, store in the outbox, then return the result with its seq.

        ``explain=True`` adds the per-input contributions (not stored in the outbox: raw
        feature values never leave the device)."""
        classifier = self._active[0]
        return self._classify(record, self._customer_ref(record, classifier.validator.id_field), explain)

    def _classify(self, record: Mapping[str, Any], ref: str | None, explain: bool) -> Result:
        classifier, drift = self._active
        result, row = classifier.classify_encoded(record, explain=explain)
        drift.observe(row.num, row.cat)
        segment, probabilities = result.segment, result.probabilities
        try:
            seq = self.outbox.append_values(
                segment, classifier.classes, list(probabilities.values()), classifier.model_version, ref, drift=drift
            )
        except Exception as exc:  # sqlite3 errors: disk full, read-only file, locked
            raise OutboxError(f"result not stored in the outbox: {exc}") from exc
        return _new_result(
            Result, (segment, probabilities, classifier.model_version, seq, result.explanation, *result[5:])
        )

    def classify_many(self, records: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> BatchResult:
        """Classify a batch and store it in the outbox in one transaction (contiguous seqs)."""
        classifier, drift = self._active
        feeds, n_rows = classifier.encode(records)
        id_field = classifier.validator.id_field
        refs: list[str | None] = [None] * n_rows
        if id_field is not None:
            if isinstance(records, Mapping):
                column = records.get(id_field)
                ids = [None] * n_rows if column is None else list(column)
                if len(ids) != n_rows:
                    raise SchemaError(id_field, len(ids), f"column length must be {n_rows}")
            else:
                ids = [record.get(id_field) for record in records]
            for row, raw in enumerate(ids):
                try:
                    refs[row] = self._customer_ref({id_field: raw}, id_field)
                except SchemaError as exc:
                    raise SchemaError(exc.field, exc.value, exc.rule, row=row) from None
        labels, probabilities = classifier.run_feeds(feeds, n_rows)
        drift.observe_batch(feeds)
        try:
            seqs = self.outbox.append_many(
                labels, classifier.classes, probabilities.tolist(), classifier.model_version, refs, drift=drift
            )
        except Exception as exc:
            raise OutboxError(f"results not stored in the outbox: {exc}") from exc
        return BatchResult(
            labels, probabilities, classifier.classes, classifier.model_version,
            np.asarray(seqs, dtype=np.int64),
        )  # fmt: skip

    # ------------------------------------------------------------------ till events
    @property
    def customer_state(self) -> CustomerState:
        """The till's customer state for the served model's feature program (opened on first use).

        Raises NoFeatureProgramError when the model names no feature program, and ValueError
        when the state file was built under another program.
        """
        state = self._state
        if state is not None:
            return state
        with self._state_lock:
            if self._state is None:
                program = _program_of(self._active[0])
                if program is None:
                    raise NoFeatureProgramError(
                        f"model {self.model_version} has no feature_program in its manifest: it was not trained on "
                        "a transaction log, so till events cannot be turned into its inputs (classify feature records)"
                    )
                self._state = CustomerState(self.customer_state_path, program, durability=self.durability)
            return self._state

    def observe(self, event: Mapping[str, Any]) -> Observed:
        """Apply one till event to its customer's state, atomically and once per (invoice, line).

        Raises ``EventError`` (naming the field; nothing applied) for a bad, future or too-late
        event, ``NoFeatureProgramError`` for a model not trained on a transaction log.
        """
        state = self.customer_state
        refs: list[str] = []

        def ref_of(customer_id: str) -> str:
            refs.append(self._ref_of(customer_id))
            return refs[-1]

        done = state.observe(event, ref_of)
        return Observed(refs[-1], done.applied, done.duplicates, done.skipped)

    def classify_customer(self, customer_id: str | int, at: datetime | str | float | None = None) -> CustomerResult:
        """The customer's segment from their till state at ``at`` (default now), stored in the
        outbox like :meth:`classify`, with the record it used.

        ``recency_days``, ``tenure_days`` and ``is_dormant`` are computed at ``at``: a customer
        turns dormant with time alone. Raises ``NoRecordError`` for a customer without a
        purchase on this device.
        """
        ref = self.customer_ref(customer_id)
        record = self.customer_state.materialise(ref, at)
        return CustomerResult(self._classify(record, ref, False), record, ref)

    def bootstrap_customer_state(
        self, snapshot_dir: str | Path, public_key: PublicKey | None = None, *, replace: bool = False
    ) -> SnapshotInfo:
        """Install head office's signed customer-state snapshot (``edge_runtime.state_snapshot``).

        Verified like a model (signature, then the state file's sha256), and refused unless it
        was built for the served model's feature program and this deployment's secret; events
        observed afterwards continue it. ``replace``: overwrite a state that holds events.
        """
        program = _program_of(self._active[0])
        if program is None:
            raise NoFeatureProgramError(f"model {self.model_version} has no feature_program: no customer state to seed")
        key = public_key if public_key is not None else self.public_key
        if key is None:
            raise SnapshotError("no trusted public key to verify the snapshot with (pass public_key)")
        with self._state_lock:
            if self._state is not None:
                self._state.close()
                self._state = None
            return install_snapshot(
                snapshot_dir, key, self.customer_state_path, program=program,
                secret_check=self.customer_ref(SECRET_CHECK_ID), replace=replace,
            )  # fmt: skip

    def report_outcome(self, customer_id: str | int, actual_segment: str) -> str:
        """Record what a customer turned out to be, keyed by their ref; returns the ref.

        Stored in the outbox file (``edge_runtime.outcomes``) and sent by ``sync``, so head
        office measures accuracy without this deployment's secret. ValueError when the segment
        is not a class of the served model (a typo must not count as a wrong prediction).
        """
        classes = self._active[0].classes
        if actual_segment not in classes:
            raise ValueError(
                f"outcome segment {actual_segment!r} is not a class of model {self.model_version}: {list(classes)}"
            )
        ref = self.customer_ref(customer_id)
        OutcomeSpool(self.outbox.path).add(ref, actual_segment)
        return ref

    # ------------------------------------------------------------------ state
    def drift_snapshot(self, *, reset: bool = False) -> dict[str, Any]:
        """Histogram counts per input since the last reset (see DriftHistograms.snapshot).

        The counts persist with the outbox (checkpointed with the results); a reset goes
        through the outbox so the counts handed out are dropped from its checkpoint too."""
        if reset:
            return self.outbox.take_drift(self._active[1])
        return self._active[1].snapshot()

    def status(self) -> dict[str, Any]:
        classifier, drift = self._active
        return {
            "model_version": classifier.model_version,
            "artifact_dir": None if classifier.artifact_dir is None else str(classifier.artifact_dir),
            "previous_model_version": None if self._previous is None else self._previous.model_version,
            "classes": list(classifier.classes),
            "inputs": classifier.input_stats,
            "drift_rows": drift.rows,
            "outbox": self.outbox.status(),
        }

    def close(self) -> None:
        try:
            self.outbox.close()
        finally:
            with self._state_lock:
                if self._state is not None:
                    self._state.close()
                    self._state = None

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _program_of(classifier: Classifier) -> FeatureProgram | None:
    """The model's feature program (None for a model not trained on a transaction log)."""
    section = classifier.manifest.feature_program
    if section is None:
        return None
    try:
        return FeatureProgram.from_json(section)
    except ValueError as exc:  # signed, but not a program this device implements
        raise ModelLoadError(f"model {classifier.model_version}: feature_program refused: {exc}") from exc
