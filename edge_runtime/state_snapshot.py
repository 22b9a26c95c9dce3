"""Bootstrap a till's customer state from a signed head-office snapshot (docs/DESIGN.md §4a, issue 11).

A store does not start empty: head office replays its transaction log up to a date through the
same device implementation (``factory.state_snapshot``), keyed by the deployment's customer
pseudonyms, and ships the resulting SQLite state file with a small signed manifest::

    <snapshot>/customer_state.sqlite   the CustomerState file (no WAL: one self-contained file)
    <snapshot>/snapshot.json           kind, format, store, until, feature_program,
                                       state_sha256/state_bytes, customers, lines, secret_check
    <snapshot>/snapshot.sig            Ed25519 over snapshot.json's exact bytes (manifest.sig's envelope)

The device trusts it like a model: the signature with the factory's public key
(``edge_runtime.signing``), then the state file's sha256 against the signed one (the bytes
checked are the bytes installed: read once, written to a temporary file, renamed into place),
then that it fits this device: the model's feature program, and ``secret_check`` (the
deployment's pseudonym of a fixed string) equal to this device's, so the snapshot's customers
are the customers the till will look up. Events after the snapshot then continue it
incrementally: snapshot + later events give the state of all events alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_runtime.customer_state import CustomerState, FeatureProgram
from edge_runtime.exceptions import EdgeRuntimeError
from edge_runtime.signing import load_public_key, verify_signed_bytes

__all__ = [
    "SECRET_CHECK_ID",
    "SNAPSHOT_FILE",
    "SNAPSHOT_SIGNATURE_FILE",
    "STATE_FILE",
    "SnapshotError",
    "SnapshotInfo",
    "install_snapshot",
    "read_verified_snapshot",
]

SNAPSHOT_KIND: Final = "edgeseg.customer_state_snapshot"
SNAPSHOT_FORMAT: Final = 1
SNAPSHOT_FILE: Final = "snapshot.json"
SNAPSHOT_SIGNATURE_FILE: Final = "snapshot.sig"
STATE_FILE: Final = "customer_state.sqlite"
#: The raw "customer id" whose pseudonym proves head office used this deployment's secret.
SECRET_CHECK_ID: Final = "edgeseg:snapshot-secret-check"


class SnapshotError(EdgeRuntimeError, ValueError):
    """A customer-state snapshot was refused (tampered, malformed, or not for this device)."""


@dataclass(frozen=True, kw_only=True)
class SnapshotInfo:
    """snapshot.json, validated: what the state holds and for whom."""

    store: str
    until: str
    feature_program: FeatureProgram
    state_sha256: str
    state_bytes: int
    customers: int
    lines: int
    secret_check: str
    created_at: str
    key_id: str | None = None

    @classmethod
    def from_json(cls, data: object) -> SnapshotInfo:
        if not isinstance(data, Mapping):
            raise SnapshotError(f"{SNAPSHOT_FILE} must be a JSON object")
        if data.get("kind") != SNAPSHOT_KIND or data.get("format_version") != SNAPSHOT_FORMAT:
            raise SnapshotError(
                f"{SNAPSHOT_FILE} is not a format-{SNAPSHOT_FORMAT} customer-state snapshot "
                f"(kind {data.get('kind')!r}, format_version {data.get('format_version')!r})"
            )
        types = {"store": str, "until": str, "state_sha256": str, "state_bytes": int, "customers": int,
                 "lines": int, "secret_check": str, "created_at": str, "feature_program": Mapping}  # fmt: skip
        known = {*types, "kind", "format_version", "key_id"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SnapshotError(f"{SNAPSHOT_FILE} field {unknown[0]!r} is unknown (known: {', '.join(sorted(known))})")
        for name, kind in types.items():
            value = data.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise SnapshotError(f"{SNAPSHOT_FILE} field {name!r} must be a {kind.__name__}, got {value!r}")
        try:
            program = FeatureProgram.from_json(data["feature_program"])
        except ValueError as exc:
            raise SnapshotError(f"{SNAPSHOT_FILE} feature_program refused: {exc}") from exc
        fields = {name: data[name] for name in types if name != "feature_program"}
        return cls(feature_program=program, key_id=data.get("key_id"), **fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store, "until": self.until, "customers": self.customers, "lines": self.lines,
            "state_sha256": self.state_sha256, "state_bytes": self.state_bytes, "created_at": self.created_at,
            "key_id": self.key_id,
        }  # fmt: skip


def read_verified_snapshot(
    folder: str | Path, public_key: str | Path | bytes | Ed25519PublicKey
) -> tuple[SnapshotInfo, bytes]:
    """The validated snapshot.json and the exact state bytes its signed sha256 matches.

    Raises SignatureError (a signature that does not verify with the trusted key) or
    SnapshotError (a missing file, a malformed manifest, a state file that is not the one signed).
    """
    root = Path(folder)
    key = load_public_key(public_key)
    try:
        manifest = (root / SNAPSHOT_FILE).read_bytes()
        signature = (root / SNAPSHOT_SIGNATURE_FILE).read_bytes()
        state = (root / STATE_FILE).read_bytes()
    except OSError as exc:
        raise SnapshotError(
            f"snapshot {str(root)!r}: cannot read {Path(str(exc.filename)).name}: {exc.strerror}"
        ) from exc
    verify_signed_bytes(manifest, signature, key, names=(SNAPSHOT_FILE, SNAPSHOT_SIGNATURE_FILE))
    try:
        parsed = json.loads(manifest)
    except ValueError as exc:
        raise SnapshotError(f"{SNAPSHOT_FILE} is not valid JSON: {exc}") from exc
    info = SnapshotInfo.from_json(parsed)
    actual = hashlib.sha256(state).hexdigest()
    if actual != info.state_sha256 or len(state) != info.state_bytes:
        raise SnapshotError(
            f"{STATE_FILE} sha256 {actual[:16]}… ({len(state)} bytes) does not match the signed "
            f"{SNAPSHOT_FILE} ({info.state_sha256[:16]}…, {info.state_bytes} bytes): refused"
        )
    return info, state


def install_snapshot(
    folder: str | Path,
    public_key: str | Path | bytes | Ed25519PublicKey,
    state_path: str | Path,
    *,
    program: FeatureProgram,
    secret_check: str,
    replace: bool = False,
) -> SnapshotInfo:
    """Verify a snapshot and install its state file at ``state_path`` (atomically).

    ``program`` is the served model's feature program and ``secret_check`` this deployment's
    pseudonym of :data:`SECRET_CHECK_ID`; a snapshot made for another program or another
    secret is refused. A state that already holds events is replaced only with ``replace``
    (its events would be lost). The caller must have closed its own connection to the state.
    """
    info, state = read_verified_snapshot(folder, public_key)
    if info.feature_program != program:
        raise SnapshotError(
            f"snapshot for store {info.store!r} was built with feature program {info.feature_program.to_json()}, "
            f"but the model uses {program.to_json()}"
        )
    if info.secret_check != secret_check:
        raise SnapshotError(
            f"snapshot for store {info.store!r} was built with another deployment secret (its customer refs would "
            "not match this device's): build it with this deployment's EDGESEG_SECRET"
        )
    target = Path(state_path)
    if target.exists() and not replace:
        with CustomerState(target, program) as current:
            held = len(current)
        if held:
            raise SnapshotError(
                f"customer state {str(target)!r} already holds {held} customer(s): installing the snapshot would "
                "drop their events (pass replace=True / --replace to do it anyway)"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(state)
            handle.flush()
            os.fsync(handle.fileno())
        for suffix in ("-wal", "-shm"):  # the old state's journal must not be applied to the new file
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return info
