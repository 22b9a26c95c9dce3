"""Engine and sessions. Built by ``create_app`` (or the CLI) from settings, never at import time.

SQLite is the zero set-up default: WAL, a busy timeout, and ``BEGIN IMMEDIATE`` so two writers
(two uvicorn workers, or a retry racing its original request) queue instead of one failing with
"database is locked" after reading a stale watermark. PostgreSQL serialises writers per device
with ``SELECT … FOR UPDATE`` on the device row (see ``services/results.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["Database", "make_engine"]


def make_engine(database_url: str, *, pool_size: int = 5) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE instead of pysqlite's BEGIN.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


@dataclass
class Database:
    """One engine and its session factory; ``app.state.db`` holds the app's."""

    engine: Engine
    sessionmaker: sessionmaker[Session]

    @classmethod
    def from_url(cls, database_url: str, *, pool_size: int = 5) -> Database:
        engine = make_engine(database_url, pool_size=pool_size)
        return cls(engine, sessionmaker(engine, expire_on_commit=False))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()
