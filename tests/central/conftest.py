"""Fixtures of the central tests: a database per back end, a signed test artifact, clients.

Storage tests run on SQLite and PostgreSQL (``backend`` is parametrised). PostgreSQL: one
uniquely named database per test session (dropped at the end) and a fresh schema per test. When
the server is unreachable the PostgreSQL cases fail in CI (CI=true) and skip elsewhere.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from central_helpers import ADMIN_TOKEN, CentralApi, new_signing_key, write_artifact  # noqa: E402

PG_HOST, PG_PORT = "127.0.0.1", 5432


# ----------------------------------------------------------------------------- PostgreSQL
def _pg_connect(dbname: str = "test"):  # type: ignore[no-untyped-def]
    import psycopg

    last: Exception | None = None
    for user in ("postgres", "root"):
        try:
            return psycopg.connect(
                host=PG_HOST,
                port=PG_PORT,
                user=user,
                dbname=dbname,
                autocommit=True,
                connect_timeout=3,
            ), user
        except psycopg.OperationalError as exc:
            last = exc
    assert last is not None
    raise last


@pytest.fixture(scope="session")
def pg_database() -> Iterator[tuple[str, str]]:
    """(user, database): a database created for this test session, dropped afterwards."""
    try:
        admin, user = _pg_connect()
    except Exception as exc:  # noqa: BLE001 - any reason the server cannot be used
        message = f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}: {exc}".strip()
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"edgeseg_central_{os.getpid()}_{secrets.token_hex(3)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield user, name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _pg_url(user: str, database: str, schema: str) -> str:
    return f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{database}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url(pg_database: tuple[str, str]) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped after the test."""
    import psycopg

    user, database = pg_database
    schema = f"t_{secrets.token_hex(4)}"
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=user, dbname=database, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _pg_url(user, database, schema)
    finally:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=user, dbname=database, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each back end."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return request.getfixturevalue("pg_url")


# ----------------------------------------------------------------------------- artifacts
@pytest.fixture(scope="session")
def central_signing_key(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """(private key, public PEM path) owned by the central tests."""
    folder = tmp_path_factory.mktemp("central_keys")
    key = new_signing_key(folder)
    return key, folder / "signing_key.pub.pem"


@pytest.fixture(scope="session")
def test_artifact(tmp_path_factory: pytest.TempPathFactory, central_signing_key) -> Path:  # type: ignore[no-untyped-def]
    return write_artifact(tmp_path_factory.mktemp("central_artifacts"), central_signing_key[0])


# ----------------------------------------------------------------------------- app and client
@pytest.fixture
def settings(database_url: str, central_signing_key):  # type: ignore[no-untyped-def]
    from central.core.config import Settings

    return Settings(
        env="test",
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        public_key_path=central_signing_key[1],
        max_batch_results=100,
        max_body_bytes=256 * 1024,
        small_cell_k=1,  # these tests count single results; suppression has its own tests
    )


@pytest.fixture
def api(settings) -> Iterator[CentralApi]:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from central.main import create_app

    app = create_app(settings)
    with TestClient(app) as client:
        yield CentralApi(client, app.state.db)
