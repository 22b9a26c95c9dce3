"""A head office for the device's tests without central: a Transport that offers one artifact
folder (``GET /v1/models/current`` and its files) and records the model reports it receives;
``request_body`` reads what the device sent (gzip or not).

Also the child process of the power-loss test: ``python edge_update_stub.py <artifact>
<public key> <models_dir> <step>`` updates ``models_dir`` to ``<artifact>`` and SIGKILLs
itself right after ``<step>`` (one of ``edge_runtime.updates.STEPS``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import signal
import sys
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from edge_runtime.client import HeadOfficeClient, Request, Response, RetryPolicy
from edge_runtime.rollback import canonical_order_bytes
from edge_runtime.updates import ModelUpdater

FILES = ("model.onnx", "manifest.json", "manifest.sig")


def request_body(request: Request) -> dict[str, Any]:
    """The JSON body of a request the head office client built (gzip decoded)."""
    content = request.content or b"{}"
    if request.headers.get("Content-Encoding") == "gzip":
        content = gzip.decompress(content)
    body: dict[str, Any] = json.loads(content)
    return body


def offer_for(artifact: Path, **extra: Any) -> dict[str, Any]:
    manifest = json.loads((artifact / "manifest.json").read_text())
    return {
        "model_version": manifest["model_version"],
        "files": {name: f"/v1/models/{manifest['model_version']}/files/{name}" for name in FILES},
        "sha256": manifest["onnx_sha256"],
        "file_sha256": {name: hashlib.sha256((artifact / name).read_bytes()).hexdigest() for name in FILES},
        **extra,
    }


class StubCentral:
    """Offers ``self.offer``; serves the files of ``self.artifact``; keeps model reports."""

    def __init__(self, artifact: Path | None, offer: dict[str, Any] | None = None) -> None:
        self.artifact = artifact
        self.offer = offer if offer is not None else (offer_for(artifact) if artifact is not None else None)
        self.reports: list[dict[str, Any]] = []
        self.paths: list[str] = []

    def handle_request(self, request: Request) -> Response:
        path = urllib.parse.urlsplit(request.url).path
        self.paths.append(path)
        if path == "/v1/models/current":
            if self.offer is None:
                return Response(404, b'{"detail": "nothing rolled out"}')
            return Response(200, json.dumps(self.offer).encode())
        if path.endswith("/model-report"):
            self.reports.append(json.loads(request.content or b"{}"))
            return Response(201, b"{}")
        name = path.rsplit("/", 1)[1]
        if self.artifact is not None and name in FILES and (self.artifact / name).is_file():
            return Response(200, (self.artifact / name).read_bytes())
        return Response(404, b'{"detail": "no such file"}')


def updater(central: StubCentral, public_key: Path, models_dir: Path, **kwargs: Any) -> ModelUpdater:
    office = HeadOfficeClient("https://hq.invalid", device_id="d-1", token="t", transport=central,
                              retry=RetryPolicy(max_retries=0))  # fmt: skip
    return ModelUpdater(office, public_key=public_key, models_dir=models_dir, **kwargs)


def signed_order(private_key: Any, from_version: str, to_version: str, issued_at: str, **fields: Any) -> dict:
    order = {"kind": "rollback", "from_version": from_version, "to_version": to_version,
             "issued_at": issued_at, "order_id": uuid.uuid4().hex, **fields}  # fmt: skip
    order["signature"] = base64.b64encode(private_key.sign(canonical_order_bytes(order))).decode("ascii")
    return order


def main() -> None:
    artifact, key, models_dir, step = sys.argv[1:5]

    def crash(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    report = updater(StubCentral(Path(artifact)), Path(key), Path(models_dir), on_step=crash).update()
    print(json.dumps(report.to_dict()), flush=True)


if __name__ == "__main__":
    main()
