"""The smaller things a new user met (issue 14, item 8): the artifact path printed whole, the
signing key's creation announced, a wrong-key refusal that says which keys and which variable,
``serve`` taking a list of records and ``explain=true``, JSONL errors at the file's line."""

from __future__ import annotations

import http.client
import io
import json
import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from edge_runtime import Classifier, Runtime, SignatureError
from edge_runtime.artifact import read_manifest


def test_the_summary_prints_the_artifact_path_whole_on_its_own_line(till_artifact: Path, tmp_path: Path) -> None:
    from rich.console import Console

    from factory.cli import _summary

    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "exported_models" / till_artifact.parent.name
    deep.mkdir(parents=True)
    artifact = deep / till_artifact.name
    shutil.copytree(till_artifact, artifact)
    out = io.StringIO()
    _summary(
        SimpleNamespace(typed_manifest=read_manifest(artifact), artifact_dir=artifact), Console(file=out, width=80)
    )
    assert str(artifact) + "\n" in out.getvalue().splitlines(keepends=True)
    assert len(str(artifact)) > 80  # the case that used to be cut


def test_creating_a_signing_key_says_where(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from factory.signing import load_or_create_key

    caplog.set_level(logging.WARNING, logger="factory")
    load_or_create_key(tmp_path / "keys")
    messages = [r.getMessage() for r in caplog.records if r.name == "factory"]
    assert len(messages) == 1 and f"created a new signing key pair in {tmp_path / 'keys'}" in messages[0]
    caplog.clear()
    load_or_create_key(tmp_path / "keys")  # loading an existing key is silent
    assert not [r for r in caplog.records if r.name == "factory"]


def test_a_wrong_key_refusal_names_both_keys_and_the_variable(till_artifact: Path, tmp_path: Path) -> None:
    from factory.signing import load_or_create_key

    load_or_create_key(tmp_path / "other")
    other = tmp_path / "other" / "signing_key.pub.pem"
    with pytest.raises(SignatureError) as caught:
        Classifier.load(till_artifact, other)
    message = str(caught.value)
    signing = read_manifest(till_artifact).signing
    assert signing is not None
    assert f"signed with key {signing.key_id}" in message
    assert str(other) in message and "EDGESEG_PUBLIC_KEY" in message


@pytest.fixture
def served(till_artifact: Path, signing_public_key: Path, tmp_path: Path) -> Iterator[tuple[int, Runtime]]:
    from edge_runtime._http import make_server

    runtime = Runtime(
        till_artifact, public_key=signing_public_key, outbox_path=tmp_path / "o.db", device_id="t", secret="s" * 32
    )
    server = make_server(runtime, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], runtime
    server.shutdown()
    server.server_close()
    runtime.close()


def _post(port: int, path: str, body: object) -> tuple[int, dict[str, object]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_serve_takes_a_list_of_records_and_explain(served: tuple[int, Runtime]) -> None:
    port, runtime = served
    record = dict(runtime.classifier.manifest.golden_samples[0].record)
    status, answer = _post(port, "/classify", [record, {**record, "country": "France"}])
    assert status == 200
    results = answer["results"]
    assert isinstance(results, list) and len(results) == 2 and results[0]["seq"] == 1
    status, single = _post(port, "/classify?explain=true", record)
    assert status == 200 and single["explanation"] and single["segment"] == results[0]["segment"]
    status, explained = _post(port, "/classify?explain=true", [record])
    assert status == 200 and explained["results"][0]["explanation"]  # type: ignore[index]
    status, refused = _post(port, "/classify?explain=maybe", record)
    assert status == 400 and "explain" in str(refused["detail"])
    status, refused = _post(port, "/classify", [record, {}])  # validated before anything is stored
    assert status == 422 and refused["row"] == 1
    assert runtime.outbox.status()["last_seq"] == 4  # 2 + 1 + 1: the refused list stored nothing


def test_a_jsonl_error_names_the_file_line_not_json_line_1(till_artifact: Path, tmp_path: Path) -> None:
    path = tmp_path / "customers.jsonl"
    path.write_text('{"a": 1}\n\n{"b": \n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "classify", "--dry-run", "--artifact", str(till_artifact),
         "--contract", "lenient", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "line 3: invalid JSON: Expecting value (column " in done.stderr
    assert "line 1 column" not in done.stderr
