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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.classifier import BatchResult, Classifier, PublicKey, Result
from edge_runtime.drift import DriftHistograms
from edge_runtime.exceptions import ModelLoadError, OutboxError, SchemaError
from edge_runtime.outbox import Outbox

__all__ = ["Runtime"]

logger = logging.getLogger("edge_runtime")

_new_result = tuple.__new__  # skips NamedTuple's keyword-handling __new__ on the hot path
MIN_SECRET_BYTES = 16
CUSTOMER_REF_HEX_CHARS = 32  # 128 bits of HMAC-SHA256: unlinkable without the secret


class Runtime:
    """Classify with a durable outbox. Thread-safe.

    ``model``: an artifact folder (verified with ``public_key``) or a loaded Classifier.
    ``secret``: the per-deployment key of the customer pseudonym
    (``customer_ref = HMAC-SHA256(secret, raw id)[:32 hex]``); the raw id is never stored.
    ``durability``: ``"process"`` (survives a killed process) or ``"power"`` (survives power
    loss, one fsync per result).
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
        if isinstance(model, Classifier):
            classifier = model
        else:
            classifier = Classifier.load(model, public_key, out_of_range=out_of_range)
        self._active = (classifier, DriftHistograms(classifier.manifest))
        self._previous: Classifier | None = None
        self.outbox = Outbox(
            outbox_path, device_id=device_id, durability=durability, max_backlog=max_backlog, **(outbox_options or {})
        )  # outbox_options: retention, disk and drift checkpoint keywords of Outbox
        self.device_id = device_id

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
            new = Classifier.load(artifact_dir, key, out_of_range=self.out_of_range)
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

    def _install(self, classifier: Classifier) -> None:
        old = self._active[0]
        # One tuple assignment: a concurrent classify sees the old pair or the new pair.
        # Drift histograms restart with the new model's reference bins.
        self._active = (classifier, DriftHistograms(classifier.manifest))
        self._previous = old
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
        classifier, drift = self._active
        result, row = classifier.classify_encoded(record, explain=explain)
        drift.observe(row.num, row.cat)
        ref = self._customer_ref(record, classifier.validator.id_field)
        segment, probabilities = result.segment, result.probabilities
        try:
            seq = self.outbox.append_values(
                segment, classifier.classes, list(probabilities.values()), classifier.model_version, ref, drift=drift
            )
        except Exception as exc:  # sqlite3 errors: disk full, read-only file, locked
            raise OutboxError(f"result not stored in the outbox: {exc}") from exc
        return _new_result(Result, (segment, probabilities, classifier.model_version, seq, result.explanation))

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
        self.outbox.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
