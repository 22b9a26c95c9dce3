"""Helpers shared by the central tests (imported by name: tests/central is on sys.path)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from edge_runtime.artifact import Manifest, manifest_bytes
from factory.signing import sign_manifest

ADMIN_TOKEN = "test-admin-token-0123456789"
CLASSES = ["high", "mid", "low"]
MODEL_VERSION = "retail-tier/20261126T120000Z"


def new_signing_key(folder: Path | None = None) -> Any:
    """An Ed25519 key owned by the test; with ``folder``, its public PEM is written there.

    A fresh key per call (central must refuse artifacts signed by a stranger), unlike the
    factory's key directory, which keeps one key; signing itself is the factory's own
    ``factory.signing.sign_manifest``.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "signing_key.pub.pem").write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return key


def sqlite_central(tmp_path: Path, public_key_path: Path) -> CentralProcess:
    """A central server process on a fresh SQLite file, trusting ``public_key_path``."""
    return CentralProcess(
        {
            "EDGESEG_DATABASE_URL": f"sqlite:///{tmp_path / 'central.db'}",
            "EDGESEG_ADMIN_TOKEN": ADMIN_TOKEN,
            "EDGESEG_ENV": "test",
            "EDGESEG_PUBLIC_KEY_PATH": str(public_key_path),
            "EDGESEG_SMALL_CELL_K": "1",  # tests count single results; suppression has its own tests
        },
        free_port(),
        tmp_path / "central.log",
    )


def reference_for_tests() -> dict[str, Any]:
    return {
        "recency_days": {
            "type": "number",
            "bin_edges": [0.0, 10.0, 50.0, 373.0],
            "proportions": [0.3, 0.4, 0.2, 0.1],
        },
        "country": {
            "type": "string",
            "categories": ["UK", "France"],
            "proportions": [0.8, 0.15],
            "other": 0.03,
            "missing": 0.02,
        },
    }


def write_artifact(
    folder: Path,
    key: Any,
    *,
    name: str = "retail-tier",
    version: str = "20261126T120000Z",
    classes: list[str] | None = None,
    model_bytes: bytes | None = None,
    tamper: bool = False,
) -> Path:
    """A signed artifact folder in the contract's layout (model.onnx is opaque bytes here)."""
    target = folder / name / version
    target.mkdir(parents=True, exist_ok=True)
    model = model_bytes if model_bytes is not None else f"onnx:{name}/{version}".encode()
    manifest = {
        "format_version": 1,
        "name": name,
        "version": version,
        "model_version": f"{name}/{version}",
        "input_layout": {"num": ["recency_days"], "cat": ["country"], "missing_token": "__missing__"},
        "inputs": [
            {"name": "recency_days", "type": "number", "required": False, "min": 0.0, "max": 373.0},
            {"name": "country", "type": "string", "required": False, "categories": ["UK", "France"]},
        ],
        "target": {"name": "value_tier", "classes": classes or CLASSES},
        "reference": reference_for_tests(),
        "onnx_sha256": hashlib.sha256(model).hexdigest(),
        "onnx_bytes": len(model),
        "golden_samples": [],
    }
    data = manifest_bytes(Manifest.from_json(manifest))  # the contract's canonical, signed bytes
    (target / "model.onnx").write_bytes(model + (b"x" if tamper else b""))
    (target / "manifest.json").write_bytes(data)
    (target / "manifest.sig").write_bytes(sign_manifest(data, key))
    return target


def upload_body(artifact: Path, rollout_to: str = "all") -> dict[str, Any]:
    files = {
        name: base64.b64encode((artifact / name).read_bytes()).decode()
        for name in ("model.onnx", "model_float.onnx", "manifest.json", "manifest.sig")
        if (artifact / name).is_file()  # the float graph only where the factory made one
    }
    return {"files": files, "rollout_to": rollout_to}


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class CentralApi:
    """A TestClient plus the few calls most tests start with."""

    def __init__(self, client: Any, db: Any) -> None:
        self.client = client
        self.db = db

    def add_device(self, store: str = "s1") -> dict[str, str]:
        response = self.client.post("/v1/devices", json={"store": store}, headers=ADMIN)
        assert response.status_code == 201, response.text
        return response.json()

    def publish(self, artifact: Path, rollout_to: str = "all") -> dict[str, Any]:
        response = self.client.post("/v1/models", json=upload_body(artifact, rollout_to), headers=ADMIN)
        assert response.status_code == 201, response.text
        return response.json()

    def count_results(self, device_id: str | None = None) -> int:
        from sqlalchemy import func, select

        from central.models import Result

        query = select(func.count()).select_from(Result)
        if device_id is not None:
            query = query.where(Result.device_id == device_id)
        with self.db.sessionmaker() as session:
            return int(session.scalar(query))


def make_result(seq: Any, **overrides: Any) -> dict[str, Any]:
    """A valid result; its probabilities make ``segment`` the most probable class."""
    segment = overrides.get("segment", "high")
    others = [c for c in CLASSES if c != segment]
    probabilities = {segment: 0.7, others[0]: 0.2, others[1]: 0.1} if segment in CLASSES else {}
    result = {
        "seq": seq,
        "customer_ref": f"c-{seq}",
        "segment": segment,
        "probabilities": probabilities or {"high": 0.7, "mid": 0.2, "low": 0.1},
        "model_version": MODEL_VERSION,
        "classified_at": "2026-11-26T12:00:00Z",
    }
    result.update(overrides)
    return result


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TestClientTransport:
    """The sync client's transport over a FastAPI TestClient (same errors as HttpTransport)."""

    __test__ = False

    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.token = token
        self.calls = 0

    def send(self, payload: Any) -> dict[str, Any]:
        from edge_runtime.exceptions import SyncError
        from edge_runtime.sync import RetryableError, parse_retry_after

        self.calls += 1
        response = self.client.post(
            "/v1/results:batch", json=payload, headers={"Authorization": f"Bearer {self.token}"}
        )
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise RetryableError(
                f"HTTP {response.status_code}",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if response.status_code != 200:
            raise SyncError(f"HTTP {response.status_code}: {response.json()['detail']}")
        return response.json()


def fill_outbox(outbox: Any, n: int, model_version: str = MODEL_VERSION) -> None:
    """``n`` results in ``outbox``; each segment is its most probable class (central checks it)."""
    for i in range(n):
        segment = CLASSES[i % 3]
        outbox.append(
            segment=segment,
            probabilities={c: 0.5 if c == segment else 0.25 for c in CLASSES},
            model_version=model_version,
            customer_ref=f"c-{i}",
        )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CentralProcess:
    """``uvicorn --factory central.main:create_app`` on loopback, in its own process."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env = env
        self.port = port
        self.log_path = log_path
        self.proc: Any = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 30.0) -> None:
        import os
        import subprocess
        import sys
        import time
        import urllib.request

        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "central.main:create_app",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"central exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"central did not start within {timeout}s")

    def kill(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def call(self, method: str, path: str, body: Any = None, token: str = ADMIN_TOKEN) -> Any:
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def require(module: str, pin: str) -> Any:
    """Import a test-only package; missing, it fails in CI (CI=true) and skips elsewhere."""
    import importlib
    import os

    import pytest

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} is needed for this test; install it with pip install '{pin}' ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
