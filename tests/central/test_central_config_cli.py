"""Settings refuse insecure defaults; the CLI manages devices and models; migrations match the
tables on both back ends."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from central_helpers import ADMIN_TOKEN, MODEL_VERSION, free_port, write_artifact
from pydantic import ValidationError

from central.cli import main
from central.core.config import DEFAULT_ADMIN_TOKEN, Settings, get_settings


@pytest.fixture
def env(monkeypatch, tmp_path, central_signing_key):  # type: ignore[no-untyped-def]
    """The CLI's environment: a fresh SQLite file, the test admin token and trusted key."""
    for name in list(os.environ):
        if name.startswith("EDGESEG_") and name != "EDGESEG_KEY_DIR":
            monkeypatch.delenv(name)
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("EDGESEG_DATABASE_URL", url)
    monkeypatch.setenv("EDGESEG_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("EDGESEG_PUBLIC_KEY", str(central_signing_key[1]))
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    """stderr without the line naming the database, which every command prints first."""
    lines = capsys.readouterr().err.splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("edgeseg-central: database "))


def test_default_admin_token_is_refused_outside_development(tmp_path) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(env="production", admin_token=DEFAULT_ADMIN_TOKEN)
    assert info.value.errors()[0]["msg"] == (
        "Value error, EDGESEG_ADMIN_TOKEN must be set to a secret outside development (got the "
        "default); set EDGESEG_ENV=development to run with the default on your own machine"
    )
    with pytest.raises(ValidationError, match="got an empty value"):
        Settings(env="test", admin_token="", admin_token_file=tmp_path / "none")
    with pytest.raises(ValidationError, match="at least 16 non-whitespace characters outside development \\(got 5\\)"):
        Settings(env="production", admin_token="short")
    assert Settings(env="development", admin_token_file=tmp_path / "none").admin_token == (DEFAULT_ADMIN_TOKEN)
    (tmp_path / "token").write_text("a-token-read-from-its-file\n")
    from_file = Settings(env="production", admin_token_file=tmp_path / "token")
    assert from_file.admin_token == "a-token-read-from-its-file"


def test_first_cli_use_creates_a_random_admin_token(env, monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delenv("EDGESEG_ADMIN_TOKEN")
    token_file = tmp_path / "secrets" / "admin_token"
    monkeypatch.setenv("EDGESEG_ADMIN_TOKEN_FILE", str(token_file))
    get_settings.cache_clear()
    assert main(["db", "upgrade"]) == 0
    assert _err(capsys) == (
        f"edgeseg-central: created an admin token in {token_file} (mode 0600); admin routes and the dashboard need it\n"
    )
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 40 and get_settings().admin_token == token
    get_settings.cache_clear()
    assert main(["db", "upgrade"]) == 0
    assert _err(capsys) == ""  # created once
    assert token_file.read_text().strip() == token


def test_settings_come_from_the_environment_once(env, monkeypatch) -> None:
    first = get_settings()
    assert (first.database_url, first.max_batch_results) == (env, 1000)
    monkeypatch.setenv("EDGESEG_MAX_BATCH_RESULTS", "7")
    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().max_batch_results == 7


def test_create_app_touches_no_database_until_it_starts(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from central.main import create_app

    database = tmp_path / "lazy.db"
    app = create_app(Settings(env="test", admin_token=ADMIN_TOKEN, database_url=f"sqlite:///{database}"))
    assert not database.exists()
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
    assert database.exists()


def test_cli_refuses_an_insecure_configuration(env, monkeypatch, capsys) -> None:
    monkeypatch.setenv("EDGESEG_ADMIN_TOKEN", DEFAULT_ADMIN_TOKEN)
    get_settings.cache_clear()
    assert main(["db", "upgrade"]) == 2
    assert capsys.readouterr().err == (
        "edgeseg-central: configuration error: EDGESEG_ADMIN_TOKEN must be set to a secret "
        "outside development (got the default); set EDGESEG_ENV=development to run with the "
        "default on your own machine\n"
    )


def test_cli_devices(env, capsys, tmp_path) -> None:
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out == "database is at the newest schema\n"

    assert main(["device", "add", "--store", "leeds", "--json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert set(created) == {"id", "store", "token"} and created["store"] == "leeds"
    assert main(["device", "add", "--store", "york"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith("device id: d-") and text[1] == "store:     york"
    assert text[3] == "The token is shown once; central keeps only its hash."

    from sqlalchemy import create_engine
    from sqlalchemy import text as sql

    engine = create_engine(env)
    with engine.connect() as conn:
        stored = conn.execute(sql("SELECT token_hash FROM devices WHERE id = :id"), {"id": created["id"]}).scalar_one()
    engine.dispose()
    assert stored == hashlib.sha256(created["token"].encode()).hexdigest()
    assert created["token"].encode() not in (tmp_path / "cli.db").read_bytes()

    assert main(["device", "revoke", created["id"]]) == 0
    assert capsys.readouterr().out == f"revoked {created['id']} (store leeds)\n"
    assert main(["device", "revoke", "d-nope"]) == 1
    assert _err(capsys) == "edgeseg-central: device 'd-nope' is not registered\n"


def test_cli_store_rename_names_a_store_for_the_dashboard(env, capsys) -> None:
    """An analyst reads "Leeds Briggate (store-7)" instead of the id the till was set up with;
    a typo'd store id is refused with the stores that exist."""
    assert main(["device", "add", "--store", "store-7"]) == 0
    capsys.readouterr()
    assert main(["store", "rename", "store-7", "Leeds Brigate"]) == 0
    assert main(["store", "rename", "store-7", "  Leeds Briggate "]) == 0  # a second rename corrects it
    assert capsys.readouterr().out.splitlines() == [
        "store store-7 is now shown as Leeds Brigate (store-7)",
        "store store-7 is now shown as Leeds Briggate (store-7)",
    ]
    assert main(["store", "rename", "store-8", "York"]) == 1
    assert _err(capsys) == "edgeseg-central: no device is registered with store 'store-8'; known stores: ['store-7']\n"
    assert main(["store", "rename", "store-7", " "]) == 1
    assert _err(capsys) == "edgeseg-central: a store name must be 1-200 characters, got ' '\n"
    assert main(["store", "list"]) == 0
    assert capsys.readouterr().out == "store-7\tLeeds Briggate\n"


def test_cli_model_publish(env, capsys, tmp_path, central_signing_key, test_artifact) -> None:
    # No device of "leeds" is registered yet: a typo would roll out to nobody, so it needs --create.
    assert main(["model", "publish", str(test_artifact), "--store", "leeds"]) == 1
    assert _err(capsys) == (
        "edgeseg-central: store 'leeds' has no devices; check its name, or pass create_store "
        "(edgeseg-central --create) to roll out to it anyway\n"
    )
    assert main(["model", "publish", str(test_artifact), "--store", "leeds", "--create"]) == 0
    assert capsys.readouterr().out == f"published {MODEL_VERSION} (high, mid, low) to store leeds\n"
    newer = write_artifact(tmp_path, central_signing_key[0], version="20261202T000000Z")
    assert main(["model", "publish", str(newer)]) == 0
    assert capsys.readouterr().out.endswith("to all stores\n")

    tampered = write_artifact(tmp_path / "t", central_signing_key[0], version="20261203T000000Z", tamper=True)
    assert main(["model", "publish", str(tampered)]) == 1
    err = _err(capsys)
    assert err.startswith("edgeseg-central: artifact refused: model.onnx sha256 ")
    assert main(["model", "publish", str(tmp_path / "missing")]) == 1
    assert _err(capsys) == ("edgeseg-central: artifact is missing model.onnx, manifest.json, manifest.sig\n")


def test_cli_model_rollback_takes_a_signed_order(env, capsys, tmp_path, central_signing_key, test_artifact) -> None:
    from factory.rollback import rollback_order

    newer = write_artifact(tmp_path, central_signing_key[0], version="20261202T000000Z")
    assert main(["model", "publish", str(test_artifact)]) == 0
    assert main(["model", "publish", str(newer)]) == 0
    capsys.readouterr()
    order = rollback_order("retail-tier/20261202T000000Z", MODEL_VERSION, central_signing_key[0])
    path = tmp_path / "order.json"
    path.write_text(json.dumps(order))
    assert main(["model", "rollback", str(path)]) == 0
    assert capsys.readouterr().out == f"rolled all stores back from retail-tier/20261202T000000Z to {MODEL_VERSION}\n"
    assert main(["model", "rollback", str(path), "--store", "leeds"]) == 1
    assert _err(capsys) == f"edgeseg-central: rollback order {order['order_id']} was already used\n"
    path.write_text(json.dumps({**order, "to_version": "../x"}))
    assert main(["model", "rollback", str(path)]) == 1
    assert "to_version" in capsys.readouterr().err


def test_cli_serve_answers_on_loopback(env, tmp_path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "central.cli", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert json.loads(r.read()) == {"status": "ok"}
                    break
            except OSError:
                assert time.monotonic() < deadline, "edgeseg-central serve did not answer"
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)


def test_migrations_match_the_tables(database_url) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from central.core.db import make_engine
    from central.core.migrate import alembic_config, upgrade
    from central.core.partitions import include_name
    from central.models import Base

    # PostgreSQL's monthly partitions of results are made by central.core.partitions, not models.
    opts = {"include_name": include_name}
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        upgrade(engine)  # idempotent
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata) == []
        config = alembic_config()
        with engine.connect() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
            conn.commit()
            assert conn.dialect.get_table_names(conn) in ([], ["alembic_version"])
        upgrade(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn, opts=opts), Base.metadata) == []
    finally:
        engine.dispose()
