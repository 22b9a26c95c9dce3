"""The edge-runtime CLI, the loopback HTTP endpoint, calibrate and the public API surface."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import shutil
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from edge_toy_artifact import GOLDEN_RECORDS

import edge_runtime
from edge_runtime import Runtime
from edge_runtime._http import make_server
from edge_runtime._onnx_proto import tree_ensemble_model
from edge_runtime._settings import get_settings
from edge_runtime.calibrate import REFERENCE_GRAPHS
from edge_runtime.cli import build_parser, main
from edge_runtime.sync import DriftSpool

SECRET = "cli-deployment-secret-0123456789"


def test_public_api():
    assert edge_runtime.__all__ == [
        "BatchResult", "Classifier", "EdgeRuntimeError", "EdgeRuntimeWarning",
        "ModelIntegrityError", "ModelLoadError", "Outbox", "OutboxError", "Result", "Runtime",
        "SchemaError", "SelfTestError", "SignatureError", "SyncError", "__version__",
    ]  # fmt: skip
    assert issubclass(edge_runtime.SchemaError, ValueError)
    assert issubclass(edge_runtime.OutboxError, OSError)
    assert issubclass(edge_runtime.SelfTestError, edge_runtime.ModelLoadError)


@pytest.fixture()
def env(monkeypatch, tmp_path, toy_artifact, toy_public_key):
    for name in ("EDGESEG_CONFIG", "EDGESEG_HOST", "EDGESEG_PORT", "EDGESEG_DURABILITY", "EDGESEG_CENTRAL_URL",
                 "EDGESEG_DEVICE_TOKEN", "EDGESEG_DEVICE_TOKEN_FILE", "EDGESEG_DRIFT_INTERVAL_S"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EDGESEG_ARTIFACT", str(toy_artifact))
    monkeypatch.setenv("EDGESEG_PUBLIC_KEY", str(toy_public_key))
    monkeypatch.setenv("EDGESEG_OUTBOX", str(tmp_path / "outbox.db"))
    monkeypatch.setenv("EDGESEG_DEVICE_ID", "till-cli")
    monkeypatch.setenv("EDGESEG_SECRET", SECRET)
    return tmp_path


def test_settings_from_config_file_env_and_flags(tmp_path, monkeypatch):
    config = tmp_path / "edge.json"
    config.write_text(json.dumps({"device_id": "from-file", "port": 9000, "durability": "power"}))
    environ = {"EDGESEG_CONFIG": str(config), "EDGESEG_PORT": "9001", "EDGESEG_KEY_DIR": "/k"}
    settings = get_settings(environ)
    assert (settings.device_id, settings.port, settings.durability) == ("from-file", 9001, "power")
    assert str(settings.public_key) == "/k/signing_key.pub.pem"
    assert settings.updated(port=None, device_id="flag").device_id == "flag"
    with pytest.raises(ValueError) as caught:
        get_settings({"EDGESEG_DURABILITY": "disk"})
    assert str(caught.value) == ("The 'durability' setting must be one of ('process', 'power'). Got 'disk' instead.")
    config.write_text(json.dumps({"colour": "red"}))
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        get_settings(environ)


def test_head_office_settings(tmp_path):
    defaults = get_settings({})
    assert (defaults.central_url, defaults.read_device_token()) == (None, None)
    assert (defaults.sync_interval_s, defaults.drift_interval_s) == (5.0, 900.0)
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    environ = {"EDGESEG_CENTRAL_URL": "https://hq.example", "EDGESEG_DEVICE_TOKEN": "from-env",
               "EDGESEG_DRIFT_INTERVAL_S": "60"}  # fmt: skip
    settings = get_settings(environ)
    assert (settings.central_url, settings.read_device_token(), settings.drift_interval_s) == (
        "https://hq.example", "from-env", 60.0,
    )  # fmt: skip
    # A token file wins over the variable; neither secret is ever shown in the settings' repr.
    with_file = get_settings({**environ, "EDGESEG_DEVICE_TOKEN_FILE": str(token_file)})
    assert with_file.read_device_token() == "from-file"
    assert "from-env" not in repr(with_file) and "from-file" not in repr(with_file)
    with pytest.raises(ValueError) as caught:
        get_settings({"EDGESEG_DRIFT_INTERVAL_S": "0"})
    assert str(caught.value) == "The 'drift_interval_s' setting must be > 0 seconds. Got 0.0 instead."


def test_parser_commands():
    parser = build_parser()
    args = parser.parse_args(["classify", "in.csv", "--format", "csv", "--dry-run"])
    assert (args.command, args.input, args.format, args.dry_run) == ("classify", "in.csv", "csv", True)
    assert parser.parse_args(["classify"]).input == "-"
    assert parser.parse_args(["serve", "--port", "0"]).port == 0
    sync = parser.parse_args(
        ["sync", "--follow", "--interval", "2", "--drift-interval", "30", "--central", "http://hq"]
    )
    assert (sync.follow, sync.sync_interval_s, sync.drift_interval_s, sync.central_url) == (
        True,
        2.0,
        30.0,
        "http://hq",
    )
    assert str(parser.parse_args(["verify", "some/dir"]).artifact_dir) == "some/dir"
    with pytest.raises(SystemExit):
        parser.parse_args(["calibrate"])  # --out is required


def test_classify_csv_reports_bad_lines_and_continues(env, capsys):
    csv_path = env / "customers.csv"
    csv_path.write_text(
        "ID,Age,Gender,Profession,Work_Experience\n"
        "462809,22,Male,Healthcare,1.0\n"
        "462643,abc,Female,Engineer,\n"
        "466315,67,,Lawyer,\n"
        "461735,,Male,Doctor,3\n"
    )
    assert main(["classify", str(csv_path)]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        "line 3: field 'Age': must be a number (got 'abc')\nline 5: field 'Age': is required (got None)\n"
    )
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [(r["line"], r["seq"]) for r in lines] == [(2, 1), (4, 2)]
    assert all(r["segment"] in "ABCD" and r["model_version"] == "toy-seg/20261127T000000Z"
               for r in lines)  # fmt: skip
    with sqlite3.connect(env / "outbox.db") as db:
        refs = [r[0] for r in db.execute("SELECT customer_ref FROM results ORDER BY seq")]
    assert refs == [hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()[:32] for raw in (b"462809", b"466315")]
    # The drift counts of the two classified rows wait in the spool for `edge-runtime sync`.
    [pending] = DriftSpool.for_outbox(env / "outbox.db").pending()
    assert (pending.model_version, pending.rows, len(pending.ids)) == ("toy-seg/20261127T000000Z", 2, 1)
    assert all(sum(counts) == 2 for counts in pending.histograms.values())


def test_classify_jsonl_stdin_dry_run(env, capsys, monkeypatch):
    lines = [json.dumps(GOLDEN_RECORDS[0]), "{not json", json.dumps([1, 2]), "",
             json.dumps(dict(GOLDEN_RECORDS[1], Age=True))]  # fmt: skip
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["classify", "--dry-run"]) == 1
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert err[0].startswith("line 2: invalid JSON: ")
    assert err[1:] == [
        "line 3: field '<record>': must be a mapping of field names to values (got [1, 2])",
        "line 5: field 'Age': must be a number, not a boolean (got True)",
    ]
    out = [json.loads(line) for line in captured.out.splitlines()]
    assert len(out) == 1 and out[0]["line"] == 1 and out[0]["seq"] is None
    assert not (env / "outbox.db").exists()
    assert DriftSpool.for_outbox(env / "outbox.db").pending() == []  # nothing stored, nothing counted
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(GOLDEN_RECORDS[2]) + "\n"))
    assert main(["classify", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 1


def test_classify_without_secret_is_a_usage_error(env, capsys, monkeypatch):
    monkeypatch.delenv("EDGESEG_SECRET")
    assert main(["classify", str(env / "nothing.csv")]) == 2
    assert capsys.readouterr().err == (
        "edge-runtime classify: EDGESEG_SECRET is not set: the per-deployment secret that pseudonymises customer ids\n"
    )


def test_verify_and_status(env, capsys, toy_artifact, tmp_path):
    assert main(["verify", str(toy_artifact)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["model_version"] == "toy-seg/20261127T000000Z"
    assert out["golden_samples"] == len(GOLDEN_RECORDS)
    bad = tmp_path / "bad"
    shutil.copytree(toy_artifact, bad)
    (bad / "model.onnx").write_bytes((bad / "model.onnx").read_bytes() + b"\0")
    assert main(["verify", str(bad)]) == 1
    assert capsys.readouterr().err.startswith("refused: ModelIntegrityError: model.onnx sha256 ")

    assert main(["status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status == {"device_id": "till-cli", "outbox": None, "inputs": None, "inputs_by_model": {},
                      "model": {"model_version": "toy-seg/20261127T000000Z",
                                "artifact_dir": str(toy_artifact),
                                "classes": ["A", "B", "C", "D"]}}  # fmt: skip
    csv_path = env / "one.csv"
    csv_path.write_text("Age\n30\n")
    assert main(["classify", str(csv_path)]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    outbox = json.loads(capsys.readouterr().out)["outbox"]
    assert (outbox["last_seq"], outbox["backlog"], outbox["backlog_exceeded"]) == (1, 1, False)


def _status_in_another_process() -> dict:
    """``edge-runtime status`` as its own process (the environment of the ``env`` fixture)."""
    cmd = [sys.executable, "-m", "edge_runtime.cli", "status"]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout)


def test_status_in_another_process_shows_the_input_gaps_a_runtime_counted(env, toy_artifact, toy_public_key):
    """An integrator on the lenient contract sees, from ``edge-runtime status`` (a process of
    its own), how many records arrived with missing or unknown inputs in the serving process."""
    records = [{"Age": 30}, {"Age": 41, "Agee": 2, "Gender": "Male"}, {"Age": 50, "Gender": "Robot"}]
    for _ in range(2):  # two serving processes' lifetimes: the counts add up
        with Runtime(toy_artifact, outbox_path=env / "outbox.db", device_id="till-cli", secret=SECRET,
                     public_key=toy_public_key, contract="lenient") as runtime:  # fmt: skip
            for record in records:
                runtime.classify(record)
            with pytest.raises(edge_runtime.SchemaError, match="field 'Age': is required"):
                runtime.classify({})  # a required input is refused even when lenient

    status = _status_in_another_process()
    inputs = status["inputs"]
    assert status["inputs_by_model"] == {"toy-seg/20261127T000000Z": inputs}
    assert inputs["records"] == 8 and inputs["refused"] == 2
    assert inputs["missing"]["Work_Experience"] == 6  # no classified record had it
    assert inputs["records_with_missing"] == 6  # every classified record left an optional input out
    assert inputs["extra_fields"] == {"Agee": 2}
    assert inputs["unknown_category"] == {"Gender": 2} and inputs["records_with_unknown"] == 2


def test_status_reads_the_input_counts_of_a_runtime_still_serving(env, toy_artifact, toy_public_key):
    """While serve runs, status (another process) sees the counts of its last checkpoint, taken
    with the drift counts every ``drift_checkpoint_rows`` stored results."""
    with Runtime(toy_artifact, outbox_path=env / "outbox.db", device_id="till-cli", secret=SECRET,
                 public_key=toy_public_key, outbox_options={"drift_checkpoint_rows": 2}) as runtime:  # fmt: skip
        for age in (30, 40, 50):
            runtime.classify({"Age": age, "Gender": "Robot"})
        inputs = _status_in_another_process()["inputs"]
        assert (inputs["records"], inputs["unknown_category"]) == (2, {"Gender": 2})  # the 3rd is not checkpointed yet
        assert runtime.status()["inputs"]["records"] == 3


def test_calibrate_writes_a_profile_the_factory_can_read(env, capsys):
    out = env / "profile.json"
    assert main(["calibrate", "--out", str(out), "--runs", "30"]) == 0
    profile = json.loads(out.read_text())
    assert profile["format_version"] == 1
    assert set(profile["measurements"]) == set(REFERENCE_GRAPHS)
    assert profile["device"]["device_id"] == "till-cli"
    ratios = [m["p50_us"] / profile["reference"]["p50_us"][name]
              for name, m in profile["measurements"].items()]  # fmt: skip
    expected = math.exp(sum(map(math.log, ratios)) / len(ratios))
    assert profile["scale"] == pytest.approx(expected, rel=1e-3)
    # Against itself as the reference, the measured numbers are the denominators.
    ref = env / "ref.json"
    doubled = {**profile, "measurements": {k: {**v, "p50_us": 2 * v["p50_us"]}
                                           for k, v in profile["measurements"].items()}}  # fmt: skip
    ref.write_text(json.dumps(doubled))
    assert main(["calibrate", "--out", str(out), "--runs", "30", "--reference", str(ref)]) == 0
    again = json.loads(out.read_text())
    assert again["reference"]["source"] == str(ref)
    assert again["reference"]["p50_us"] == {k: v["p50_us"] for k, v in doubled["measurements"].items()}


def test_reference_graphs_are_valid_onnx():
    onnx = pytest.importorskip("onnx")  # the factory's dependency, absent on a device
    for spec in REFERENCE_GRAPHS.values():
        model = onnx.load_from_string(tree_ensemble_model(classes=["A", "B"], **spec))
        onnx.checker.check_model(model, full_check=True)
        assert [i.name for i in model.graph.input] == (["num", "cat"] if spec["categories"]
                                                       else ["num"])  # fmt: skip


@pytest.fixture()
def server(toy_artifact, toy_public_key, tmp_path):
    runtime = Runtime(toy_artifact, outbox_path=tmp_path / "o.db", device_id="till-http",
                      secret=SECRET, public_key=toy_public_key)  # fmt: skip
    httpd = make_server(runtime, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", runtime
    httpd.shutdown()
    httpd.server_close()
    runtime.close()


def call(url: str, body: object | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_endpoint(server):
    base, runtime = server
    status, body = call(f"{base}/classify", GOLDEN_RECORDS[0])
    assert status == 200 and body["seq"] == 1
    stored = runtime.outbox.pending(1)[0]
    assert (body["segment"], body["probabilities"]) == (stored["segment"], stored["probabilities"])
    assert call(f"{base}/classify", dict(GOLDEN_RECORDS[0], Age="x")) == (422, {
        "detail": "field 'Age': must be a number (got 'x')", "field": "Age",
        "rule": "must be a number", "row": None,
    })  # fmt: skip
    status, body = call(f"{base}/classify", {"records": [GOLDEN_RECORDS[1], GOLDEN_RECORDS[2]]})
    assert status == 200 and [r["seq"] for r in body["results"]] == [2, 3]
    assert call(f"{base}/health") == (200, {"status": "ok",
                                            "model_version": "toy-seg/20261127T000000Z"})  # fmt: skip
    status, body = call(f"{base}/status")
    assert status == 200 and body["outbox"]["last_seq"] == 3
    assert call(f"{base}/nope") == (404, {"detail": "no route GET /nope"})
    with pytest.raises(ValueError) as caught:
        make_server(runtime, "0.0.0.0", 0)
    assert str(caught.value) == (
        "The 'host' parameter of serve must be a loopback address (the endpoint has no "
        "authentication). Got '0.0.0.0' instead."
    )


def test_serve_command_runs_and_stops_on_sigterm(env, toy_artifact):
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime.cli", "serve", "--port", "0"],
        stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        assert line.startswith("edge-runtime serving toy-seg/20261127T000000Z on http://127.0.0.1:")
        base = line.split(" on ")[1].strip()
        assert call(f"{base}/health")[0] == 200
        status, body = call(f"{base}/classify", GOLDEN_RECORDS[0])
        assert (status, body["seq"]) == (200, 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    with sqlite3.connect(env / "outbox.db") as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1
    # Stopping spools the counts not saved yet, so a separate `sync` process can send them.
    [pending] = DriftSpool.for_outbox(env / "outbox.db").pending()
    assert (pending.model_version, pending.rows) == ("toy-seg/20261127T000000Z", 1)


def test_sync_without_head_office_settings_is_a_usage_error(env, capsys):
    assert main(["sync"]) == 2
    assert capsys.readouterr().err == (
        "edge-runtime sync: missing --central (or EDGESEG_CENTRAL_URL), --token-file (or EDGESEG_DEVICE_TOKEN)\n"
    )
    assert main(["update", "--central", "http://hq.invalid", "--token-file", str(env / "absent"),
                 "--models-dir", str(env / "models")]) == 2  # fmt: skip
    assert capsys.readouterr().err.startswith(
        f"edge-runtime update: cannot read the device token file {str(env / 'absent')!r}: "
    )
