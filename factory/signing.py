"""Create the factory's Ed25519 key pair on first use and sign manifests.

The private key lives only in the key directory (``edge_runtime.artifact.default_key_dir``:
``EDGESEG_KEY_DIR``, default ``~/.config/edgeseg/keys``), created with mode 0600, never under
``exported_models/``. Verifying is the edge runtime's job (``edge_runtime.signing``), shared
with central.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_runtime.artifact import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, default_key_dir
from edge_runtime.signing import key_id

# The key names and the key-folder rule are the artifact contract's (one rule for the factory,
# the device and central); re-exported here for the factory's callers.
__all__ = ["PRIVATE_KEY_NAME", "PUBLIC_KEY_NAME", "default_key_dir", "load_or_create_key", "sign_manifest"]


def load_or_create_key(key_dir: Path | None = None) -> Ed25519PrivateKey:
    """Load the signing key, creating the pair (private 0600, public beside it) if absent."""
    folder = Path(key_dir) if key_dir is not None else default_key_dir()
    private_path = folder / PRIVATE_KEY_NAME
    if private_path.exists():
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{private_path} holds a {type(key).__name__}, expected Ed25519")
        return key
    if not folder.is_dir():
        # Only the owner may list or add keys (issue 10): 0700 whatever the umask says.
        folder.mkdir(parents=True, mode=0o700, exist_ok=True)
        folder.chmod(0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (folder / PUBLIC_KEY_NAME).write_bytes(public_pem)
    logging.getLogger("factory").warning(
        "created a new signing key pair in %s: %s (private, mode 0600; keep it off exported_models/ and git) "
        "and %s (give it to devices and central: EDGESEG_PUBLIC_KEY)",
        folder, PRIVATE_KEY_NAME, PUBLIC_KEY_NAME,
    )  # fmt: skip
    return key


def sign_manifest(manifest_bytes: bytes, key: Ed25519PrivateKey) -> bytes:
    """The manifest.sig content for these exact manifest bytes."""
    envelope = {
        "algorithm": "ed25519",
        "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(key.sign(manifest_bytes)).decode("ascii"),
    }
    return (json.dumps(envelope, indent=2, sort_keys=True) + "\n").encode("utf-8")
