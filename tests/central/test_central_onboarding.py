"""Device onboarding without traps (issue 14, items 3 and 4).

The central CLI finds the same database from any folder (an anchored data directory) and says
which one it uses; ``device add`` takes the device's id or adopts an outbox's; an outbox made
before registration is re-homed in one step, and ``sync`` says so instead of a traceback; one
public-key variable on device and central.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from central.cli import main
from central.core.config import Settings, get_settings
from edge_runtime.outbox import Outbox


@pytest.fixture
def data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, central_signing_key) -> Path:  # type: ignore[no-untyped-def]
    """No database URL at all: only the data directory decides where central's files are."""
    for name in list(os.environ):
        if name.startswith("EDGESEG_") and name != "EDGESEG_KEY_DIR":
            monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    monkeypatch.setenv("EDGESEG_DATA_DIR", str(data_dir))
    monkeypatch.setenv("EDGESEG_ADMIN_TOKEN", "an-admin-token-of-enough-length")
    monkeypatch.setenv("EDGESEG_PUBLIC_KEY", str(central_signing_key[1]))
    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


def _add(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, str] | None, str]:
    get_settings.cache_clear()
    code = main(["device", "add", "--json", *args])
    out = capsys.readouterr()
    return code, json.loads(out.out) if code == 0 else None, out.err


def test_every_folder_reaches_the_same_database_and_the_cli_names_it(
    data_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        code, _, err = _add(capsys, "--store", "leeds")
        assert code == 0
        assert f"edgeseg-central: database sqlite:///{data_env / 'central.db'}\n" in err
    assert not (tmp_path / "one" / ".edgeseg").exists() and not (tmp_path / "two" / ".edgeseg").exists()
    get_settings.cache_clear()
    assert main(["db", "upgrade"]) == 0
    assert str(data_env / "central.db") in capsys.readouterr().err
    import sqlite3

    with sqlite3.connect(data_env / "central.db") as db:
        assert db.execute("SELECT COUNT(*) FROM devices").fetchone()[0] == 2


def test_device_add_takes_the_device_id_or_adopts_an_outbox(
    data_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, device, _ = _add(capsys, "--store", "leeds", "--device-id", "till-7")
    assert code == 0 and device is not None and device["id"] == "till-7"
    code, _, err = _add(capsys, "--store", "leeds", "--device-id", "till-7")
    assert code == 1 and "device 'till-7' is already registered" in err
    code, _, err = _add(capsys, "--store", "leeds", "--device-id", "../etc")
    assert code == 1 and "must be 1-64 letters" in err
    outbox = Outbox(tmp_path / "outbox.db", device_id="pos-host-3")  # made before registration
    outbox.close()
    code, device, _ = _add(capsys, "--store", "york", "--adopt-outbox", str(tmp_path / "outbox.db"))
    assert code == 0 and device is not None and device["id"] == "pos-host-3"


def _edge(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_an_outbox_made_before_registration_is_rehomed_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, device_id="pos-host-3")
    outbox.append_values("lapsed", ("lapsed", "top"), [0.9, 0.1], "m/1", "ref")
    outbox.close()
    env = {**os.environ, "EDGESEG_OUTBOX": str(path), "EDGESEG_DEVICE_ID": "d-1234"}
    # the registered id does not match the outbox: one clear line naming the fix, no traceback
    done = _edge("sync", "--central", "https://central.invalid", env={**env, "EDGESEG_DEVICE_TOKEN": "t"})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "belongs to device 'pos-host-3'" in done.stderr
    assert f"edge-runtime outbox rehome --device-id d-1234 --outbox {path}" in done.stderr
    done = _edge("outbox", "rehome", "--device-id", "d-1234", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"outbox": str(path), "from": "pos-host-3", "to": "d-1234", "unsynced": 1}
    reopened = Outbox(path, device_id="d-1234")  # the unsynced result is now this device's
    assert [row["seq"] for row in reopened.pending(10)] == [1]
    reopened.close()


def test_rehome_is_refused_once_results_were_sent_under_the_old_id(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, device_id="till-1")
    seq = outbox.append_values("lapsed", ("lapsed", "top"), [0.9, 0.1], "m/1", "ref")
    outbox.mark_synced([seq])
    outbox.close()
    done = _edge("outbox", "rehome", "--device-id", "d-9", "--outbox", str(path), env=dict(os.environ))
    assert done.returncode == 2
    assert "already sent results up to seq 1 as device 'till-1'" in done.stderr


def test_one_public_key_variable_and_the_old_central_name_still_works(
    data_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert Settings().public_key_path == Path(os.environ["EDGESEG_PUBLIC_KEY"])
    monkeypatch.delenv("EDGESEG_PUBLIC_KEY")
    monkeypatch.setenv("EDGESEG_PUBLIC_KEY_PATH", str(tmp_path / "old.pem"))
    assert Settings().public_key_path == tmp_path / "old.pem"
    get_settings.cache_clear()
    assert main(["db", "upgrade"]) == 0
    assert "EDGESEG_PUBLIC_KEY_PATH is deprecated; set EDGESEG_PUBLIC_KEY" in capsys.readouterr().err
