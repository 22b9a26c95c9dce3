"""Monthly partitions and retention (issue 17): exactly-once holds across months and after old
results are dropped, on SQLite (one table) and PostgreSQL (one partition per received month)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from central_helpers import MODEL_VERSION
from sqlalchemy import text

from central.core import partitions
from central.schemas import ResultCreate
from central.services import results as results_service
from central.services.errors import Conflict
from central.services.results import ClassCache, ingest


def _result(seq: int, segment: str = "high") -> ResultCreate:
    probabilities = {"high": 0.5, "mid": 0.25, "low": 0.25}
    if segment != "high":
        probabilities = {"high": 0.25, "mid": 0.25, "low": 0.5}
    return ResultCreate(
        seq=seq,
        customer_ref=f"c-{seq}",
        segment=segment,
        probabilities=probabilities,
        model_version=MODEL_VERSION,
        classified_at=datetime(2026, 1, 15, 12, tzinfo=UTC),
    )


@pytest.fixture
def store(database_url, test_artifact, central_signing_key):  # type: ignore[no-untyped-def]
    from central.core.db import Database
    from central.core.migrate import upgrade
    from central.services import devices
    from central.services.models import register_artifact_dir

    db = Database.from_url(database_url)
    upgrade(db.engine)
    with db.sessionmaker() as session:
        register_artifact_dir(session, test_artifact, central_signing_key[1])
        device_id = devices.create_device(session, "s")[0].id
    yield db, device_id
    db.dispose()


def _at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    """Central's clock reads ``moment`` (naive UTC) in the ingest service."""
    monkeypatch.setattr(results_service, "utc_now", lambda: moment)


def _send(db, device_id: str, seqs: list[int], segment: str = "high"):  # type: ignore[no-untyped-def]
    with db.sessionmaker() as session:
        return ingest(session, device_id, [_result(s, segment) for s in seqs], ClassCache())


def _count(db, table: str) -> int:  # type: ignore[no-untyped-def]
    with db.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_a_replay_months_later_is_a_duplicate_and_other_content_a_conflict(store, monkeypatch) -> None:
    db, device_id = store
    _at(monkeypatch, datetime(2026, 2, 10))
    assert _send(db, device_id, [1, 2, 3]).stored == 3
    _at(monkeypatch, datetime(2026, 5, 3))  # another month: on PostgreSQL another partition
    replay = _send(db, device_id, [2, 3, 4])
    assert (replay.stored, replay.duplicates, replay.acked_through) == (1, 2, 4)
    with pytest.raises(Conflict, match="result seq 3 of epoch '' conflicts"):
        _send(db, device_id, [3, 5], segment="low")
    assert _count(db, "results") == _count(db, "result_keys") == 4
    if db.dialect == "postgresql":
        names = {p.name for p in partitions.list_partitions(db.engine)}
        assert {"results_y2026m02", "results_y2026m05"} <= names  # made on demand
        with db.engine.connect() as conn:
            per_month = dict(
                conn.execute(text("SELECT tableoid::regclass::text, count(*) FROM results GROUP BY 1")).all()
            )
        assert per_month == {"results_y2026m02": 3, "results_y2026m05": 1}


def test_retention_drops_old_months_and_never_stores_a_result_twice(store, monkeypatch) -> None:
    db, device_id = store
    _at(monkeypatch, datetime(2026, 1, 20))
    _send(db, device_id, [1, 2, 3, 5])  # 4 waits above the watermark (3): a gap
    _at(monkeypatch, datetime(2026, 3, 2))
    _send(db, device_id, [6])
    report = partitions.apply_retention(db.engine, keep_months=2, now=datetime(2026, 3, 15))
    assert report.horizon.isoformat() == "2026-02-01"
    assert report.deleted_results == 4
    assert report.deleted_keys == 3  # 1-3; the key of 5 stays, above the watermark
    if db.dialect == "postgresql":
        assert report.dropped_partitions == ["results_y2026m01"]
        assert "results_y2026m01" not in {p.name for p in partitions.list_partitions(db.engine)}
    assert _count(db, "results") == 1
    # The device never got its acks and sends everything again: nothing is stored twice.
    _at(monkeypatch, datetime(2026, 3, 20))
    again = _send(db, device_id, [1, 2, 3, 5, 6])
    assert (again.stored, again.duplicates, again.acked_through) == (0, 5, 3)
    assert _count(db, "results") == 1
    filled = _send(db, device_id, [4])
    assert (filled.stored, filled.acked_through) == (1, 6)


def test_partitions_are_made_ahead_idempotently(store) -> None:
    db, _ = store
    now = datetime(2031, 11, 5)
    created = partitions.ensure_ahead(db.engine, 3, now=now)
    if db.dialect != "postgresql":
        assert created == [] and partitions.list_partitions(db.engine) == []
        return
    assert created == ["results_y2031m11", "results_y2031m12", "results_y2032m01", "results_y2032m02"]
    assert partitions.ensure_ahead(db.engine, 3, now=now) == []
    bounds = {p.name: (p.start.isoformat(), p.end.isoformat()) for p in partitions.list_partitions(db.engine)}
    assert bounds["results_y2031m12"] == ("2031-12-01", "2032-01-01")


def test_retention_refuses_to_drop_the_current_month() -> None:
    with pytest.raises(ValueError, match="keep_months must be >= 1"):
        partitions.retention_horizon(0)
    assert partitions.retention_horizon(1, datetime(2026, 3, 31)).isoformat() == "2026-03-01"
    assert partitions.retention_horizon(13, datetime(2026, 3, 31)).isoformat() == "2025-03-01"


def test_cli_partitions_and_retention(database_url, monkeypatch, capsys, tmp_path) -> None:
    from central.cli import main

    monkeypatch.setenv("EDGESEG_DATABASE_URL", database_url)
    monkeypatch.setenv("EDGESEG_ADMIN_TOKEN", "test-admin-token-0123456789")
    monkeypatch.setenv("EDGESEG_ENV", "test")
    from central.core.config import get_settings

    get_settings.cache_clear()
    try:
        assert main(["partitions", "ensure", "--months-ahead", "5"]) == 0
        out = capsys.readouterr().out
        if "postgresql" in database_url:
            assert "partitions: results_y" in out
        else:
            assert "results is not partitioned" in out
        assert main(["retention", "apply", "--keep-months", "0"]) == 2
        assert "--keep-months must be >= 1, got 0" in capsys.readouterr().err
        assert main(["retention", "apply", "--keep-months", "12"]) == 0
        assert "deleted 0 result(s)" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()


def test_migration_0003_round_trips_stored_results(store, monkeypatch) -> None:
    """Down to 0002 (one table, unique key, hashes in results) and up again keeps every result,
    its id and its content check."""
    from central.core.migrate import alembic_config, upgrade

    db, device_id = store
    _at(monkeypatch, datetime(2026, 2, 10))
    _send(db, device_id, [1, 2])
    _at(monkeypatch, datetime(2026, 4, 10))
    _send(db, device_id, [3])
    with db.engine.connect() as conn:
        before = conn.execute(text("SELECT id, seq FROM results ORDER BY id")).all()
    from alembic import command

    config = alembic_config()
    with db.engine.connect() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
        conn.commit()
        assert conn.execute(text("SELECT id, seq FROM results ORDER BY id")).all() == before
        assert conn.execute(text("SELECT count(*) FROM results WHERE content_sha256 IS NULL")).scalar_one() == 0
    upgrade(db.engine)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT id, seq FROM results ORDER BY id")).all() == before
    assert _count(db, "result_keys") == 3
    with pytest.raises(Conflict, match="result seq 2 of epoch '' conflicts"):
        _send(db, device_id, [2], segment="low")
    assert _send(db, device_id, [1, 2, 3, 4]).stored == 1
