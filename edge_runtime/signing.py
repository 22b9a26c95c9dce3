"""Verify a signed artifact: Ed25519 over manifest.json, then the ONNX hash it carries.

Only verification lives here (the device never holds a private key); the factory's
``factory.signing`` creates keys and signs. Central uses this module too, so the device and head
office accept exactly the same artifacts. The order is fixed: the signature over the exact
manifest bytes first, then the contract (``edge_runtime.artifact.Manifest.from_json``: an
unsupported ``format_version`` or a malformed field is a ``ManifestError``), then the model's
sha256 against the signed ``onnx_sha256``. Callers get the typed :class:`Manifest`.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_runtime.artifact import FLOAT_MODEL_FILE, MANIFEST_FILE, MODEL_FILE, SIGNATURE_FILE, Manifest
from edge_runtime.exceptions import ManifestError, ModelIntegrityError, ModelLoadError, SignatureError

__all__ = [
    "key_id",
    "load_float_graph",
    "load_public_key",
    "load_verified_artifact",
    "sha256_file",
    "verify_artifact",
    "verify_manifest_bytes",
    "verify_signed_bytes",
]


def load_public_key(key: str | Path | bytes | Ed25519PublicKey) -> Ed25519PublicKey:
    """Accept a key object, PEM bytes, raw 32 bytes, or a path to a PEM file."""
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, (str, Path)):
        path = Path(key)
        try:
            key = path.read_bytes()
        except OSError as exc:
            raise SignatureError(f"cannot read public key {str(path)!r}: {exc.strerror}") from exc
    if len(key) == 32:
        return Ed25519PublicKey.from_public_bytes(key)
    try:
        loaded = serialization.load_pem_public_key(key)
    except ValueError as exc:
        raise SignatureError("public key is neither PEM nor 32 raw Ed25519 bytes") from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise SignatureError(f"public key is a {type(loaded).__name__}, expected Ed25519")
    return loaded


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex chars of sha256 of the raw public key: names a key without showing it."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_signed_bytes(
    data: bytes,
    signature_bytes: bytes,
    public_key: Ed25519PublicKey,
    *,
    names: tuple[str, str] = (MANIFEST_FILE, SIGNATURE_FILE),
) -> None:
    """Check a ``.sig`` envelope (``{"algorithm": "ed25519", "signature": base64}``) over the
    exact ``data`` bytes; SignatureError otherwise. ``names``: the signed file and the
    signature file, for the message (a manifest, or a customer-state snapshot's)."""
    signed_name, signature_name = names
    try:
        envelope = json.loads(signature_bytes)
        signature = base64.b64decode(envelope["signature"], validate=True)
        algorithm = envelope["algorithm"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SignatureError(f"{signature_name} is malformed: {exc}") from exc
    if algorithm != "ed25519":
        raise SignatureError(f"{signature_name}: algorithm {algorithm!r} is not 'ed25519'")
    try:
        public_key.verify(signature, data)
    except InvalidSignature as exc:
        raise SignatureError(
            f"{signed_name} signature does not verify with the trusted key {key_id(public_key)}"
        ) from exc


def verify_manifest_bytes(manifest_bytes: bytes, signature_bytes: bytes, public_key: Ed25519PublicKey) -> Manifest:
    """Check the signature file against the manifest bytes; return the validated manifest.

    SignatureError when the signature does not verify; ManifestError (signed, but not a
    manifest this runtime reads, e.g. another format_version) when the contract refuses it.
    """
    verify_signed_bytes(manifest_bytes, signature_bytes, public_key)
    try:
        parsed = json.loads(manifest_bytes)
    except ValueError as exc:  # signed garbage: still refuse it clearly
        raise ManifestError("<manifest>", f"{MANIFEST_FILE} is not valid JSON: {exc}") from exc
    return Manifest.from_json(parsed)


def verify_artifact(artifact_dir: str | Path, public_key: str | Path | bytes | Ed25519PublicKey) -> Manifest:
    """Verify signature, contract, then ONNX hash of an artifact folder; return its manifest.

    Raises SignatureError, ManifestError, ModelIntegrityError or ModelLoadError (a file is
    missing).
    """
    manifest, _ = load_verified_artifact(artifact_dir, public_key)
    return manifest


def load_verified_artifact(
    artifact_dir: str | Path, public_key: str | Path | bytes | Ed25519PublicKey
) -> tuple[Manifest, bytes]:
    """Like :func:`verify_artifact`, and return the exact model bytes that were hashed.

    The edge runtime builds its session from these bytes, so a file swapped between the hash
    check and the load cannot be served (no time-of-check/time-of-use gap).
    """
    folder = Path(artifact_dir)
    key = load_public_key(public_key)
    paths = {name: folder / name for name in (MANIFEST_FILE, SIGNATURE_FILE, MODEL_FILE)}
    for name, path in paths.items():
        if not path.is_file():
            raise ModelLoadError(f"artifact {str(folder)!r} has no {name}")
    manifest_data = paths[MANIFEST_FILE].read_bytes()
    try:
        manifest = verify_manifest_bytes(manifest_data, paths[SIGNATURE_FILE].read_bytes(), key)
    except SignatureError as exc:
        hint = _wrong_key_hint(manifest_data, public_key, key) if "does not verify" in str(exc) else None
        if hint is None:  # malformed, or signed by this very key and then changed: tampering
            raise
        raise SignatureError(f"{exc}; {hint}") from exc
    model_bytes = paths[MODEL_FILE].read_bytes()
    actual = hashlib.sha256(model_bytes).hexdigest()
    if actual != manifest.onnx_sha256:
        raise ModelIntegrityError(
            f"{MODEL_FILE} sha256 {actual[:16]}… does not match the signed manifest ({manifest.onnx_sha256[:16]}…)"
        )
    return manifest, model_bytes


def _wrong_key_hint(
    manifest_data: bytes, given: str | Path | bytes | Ed25519PublicKey, key: Ed25519PublicKey
) -> str | None:
    """Which key signed the artifact, which one this device trusts and where that came from.

    The artifact's key id is read from the (unverified) manifest only to name it: a refusal
    from a device holding another factory's key must say so, not just "does not verify".
    None when the manifest names no other key (then the bytes changed, not the key).
    """
    try:
        signing = json.loads(manifest_data).get("signing") or {}
        claimed = signing.get("key_id") if isinstance(signing, dict) else None
    except (ValueError, AttributeError):
        claimed = None
    if not isinstance(claimed, str) or claimed == key_id(key):
        return None
    source = f"{str(given)!r}" if isinstance(given, (str, Path)) else "the key object passed in"
    return (
        f"the artifact was signed with key {claimed}, the trusted key {key_id(key)} was read from {source}; "
        "point EDGESEG_PUBLIC_KEY (or --public-key; EDGESEG_KEY_DIR for the key folder) at the factory's "
        "signing_key.pub.pem"
    )


def load_float_graph(artifact_dir: str | Path, manifest: Manifest) -> bytes | None:
    """The float-only graph's bytes when the verified manifest says the device runs it.

    None when ``manifest.device_graph`` is not ``"float"`` (older artifacts) or when the file
    is absent (a channel that carries only the three device files): ``model.onnx`` is the
    contract and serves then. A file whose sha256 is not the signed ``float_graph.sha256`` is a
    ``ModelIntegrityError``, like a tampered ``model.onnx``.
    """
    float_graph = manifest.float_graph
    if manifest.device_graph != "float" or float_graph is None:
        return None
    path = Path(artifact_dir) / FLOAT_MODEL_FILE
    try:
        model_bytes = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelLoadError(f"cannot read {FLOAT_MODEL_FILE}: {exc.strerror}") from exc
    actual = hashlib.sha256(model_bytes).hexdigest()
    if actual != float_graph.sha256:
        raise ModelIntegrityError(
            f"{FLOAT_MODEL_FILE} sha256 {actual[:16]}… does not match the signed manifest ({float_graph.sha256[:16]}…)"
        )
    return model_bytes
