"""Write an artifact folder atomically and signed.

Everything is written into a hidden temporary folder beside the destination and renamed into
place in one step, so a crash or an error leaves no half-written artifact in
``exported_models/`` (the temporary folder is removed on failure).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_runtime.signing import MANIFEST_NAME, MODEL_NAME, SIGNATURE_NAME, key_id, sha256_file
from factory.signing import sign_manifest

__all__ = ["manifest_bytes", "write_artifact"]


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_artifact(
    destination: Path,
    *,
    model_bytes: bytes,
    manifest: dict[str, Any],
    key: Ed25519PrivateKey,
    extra_files: dict[str, bytes],
) -> dict[str, Any]:
    """Write model, manifest (with the ONNX hash and key id filled in), signature and extras."""
    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(f"artifact folder {str(destination)!r} already exists")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        (staging / MODEL_NAME).write_bytes(model_bytes)
        manifest = dict(manifest)
        manifest["onnx_sha256"] = sha256_file(staging / MODEL_NAME)
        manifest["onnx_bytes"] = len(model_bytes)
        manifest["signing"] = {"key_id": key_id(key.public_key())}
        body = manifest_bytes(manifest)
        (staging / MANIFEST_NAME).write_bytes(body)
        (staging / SIGNATURE_NAME).write_bytes(sign_manifest(body, key))
        for name, content in extra_files.items():
            (staging / name).write_bytes(content)
        for child in staging.iterdir():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
        os.chmod(staging, 0o755)
        os.rename(staging, destination)
        _fsync_dir(destination.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
