"""The write stage: an artifact folder, written atomically and signed through the contract.

The manifest the factory assembled is validated by ``edge_runtime.artifact.Manifest.from_json``
(the same check every reader makes, so the factory cannot write what a device would refuse),
and ``manifest_bytes`` gives the exact bytes that are signed and written.

Everything is written into a hidden temporary folder beside the destination and renamed into
place in one step, so a crash or an error leaves no half-written artifact in
``exported_models/`` (the temporary folder is removed on failure).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_runtime.artifact import (
    CARD_FILE,
    CARD_HTML_FILE,
    FLOAT_MODEL_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SEARCH_LOG_FILE,
    SIGNATURE_FILE,
    Manifest,
    manifest_bytes,
)
from edge_runtime.durable import fsync_dir
from edge_runtime.signing import key_id, sha256_file
from factory._card import render_card, render_card_html
from factory.signing import load_or_create_key, sign_manifest

__all__ = ["write_artifact", "write_build"]


def write_artifact(
    destination: Path,
    *,
    model_bytes: bytes,
    manifest: Mapping[str, Any],
    key: Ed25519PrivateKey,
    extra_files: Mapping[str, bytes],
) -> Manifest:
    """Write model, manifest (with the ONNX hash, size and key id filled in), signature and extras.

    Raises ``edge_runtime.exceptions.ManifestError`` (naming the field) before anything is
    written when the manifest does not meet the contract.
    """
    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(f"artifact folder {str(destination)!r} already exists")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        (staging / MODEL_FILE).write_bytes(model_bytes)
        complete = dict(
            manifest,
            onnx_sha256=sha256_file(staging / MODEL_FILE),
            onnx_bytes=len(model_bytes),
            signing={"key_id": key_id(key.public_key())},
        )
        typed = Manifest.from_json(complete)
        body = manifest_bytes(typed)
        (staging / MANIFEST_FILE).write_bytes(body)
        (staging / SIGNATURE_FILE).write_bytes(sign_manifest(body, key))
        for name, content in extra_files.items():
            (staging / name).write_bytes(content)
        for child in staging.iterdir():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
        os.chmod(staging, 0o755)
        os.rename(staging, destination)
        fsync_dir(destination.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return typed


def write_build(
    destination: Path,
    *,
    manifest: Mapping[str, Any],
    model_bytes: bytes,
    trials: Sequence[Mapping[str, Any]],
    key_dir: Path | None,
    float_model_bytes: bytes | None = None,
) -> Manifest:
    """Model (and the float-only graph, when given), signed manifest, both cards and the search
    log, atomically; the manifest as written (it carries the float graph's sha256 already)."""
    log_lines = "".join(json.dumps(t, sort_keys=True) + "\n" for t in trials)
    # The cards are rendered (from the manifest as the contract reads it) before the hash is
    # known; they do not show it.
    provisional = Manifest.from_json(dict(manifest, onnx_sha256="", onnx_bytes=len(model_bytes)))
    return write_artifact(
        destination,
        model_bytes=model_bytes,
        manifest=manifest,
        key=load_or_create_key(key_dir),
        extra_files={
            CARD_FILE: render_card(provisional).encode("utf-8"),
            CARD_HTML_FILE: render_card_html(provisional, trials).encode("utf-8"),
            SEARCH_LOG_FILE: log_lines.encode("utf-8"),
            **({} if float_model_bytes is None else {FLOAT_MODEL_FILE: float_model_bytes}),
        },
    )
