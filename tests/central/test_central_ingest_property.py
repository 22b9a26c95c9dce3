"""Property: whatever order, overlap and replay batches arrive in, central stores each seq once
and ``acked_through`` is exactly the contiguous prefix held (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from central_helpers import MODEL_VERSION
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.schemas import ResultCreate
from central.services.results import ClassCache, ingest

batches_strategy = st.lists(
    st.lists(st.integers(min_value=1, max_value=40), min_size=0, max_size=15, unique=True),
    min_size=1,
    max_size=12,
)


def _result(seq: int) -> ResultCreate:
    return ResultCreate(
        seq=seq,
        customer_ref=f"c-{seq}",
        segment="high",
        probabilities={"high": 0.5, "mid": 0.25, "low": 0.25},
        model_version=MODEL_VERSION,
        classified_at=datetime(2026, 11, 26, 12, tzinfo=UTC),
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
    yield db, devices
    db.dispose()


def test_any_arrival_order_is_stored_once_with_the_right_watermark(store) -> None:
    db, devices = store
    cache = ClassCache()

    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(batches=batches_strategy)
    def check(batches: list[list[int]]) -> None:
        with db.sessionmaker() as session:
            device_id = devices.create_device(session, "s")[0].id
        held: set[int] = set()
        for batch in batches:
            with db.sessionmaker() as session:
                outcome = ingest(session, device_id, [_result(s) for s in batch], cache)
            assert outcome.stored == len(set(batch) - held)
            assert outcome.stored + outcome.duplicates == len(batch)
            held |= set(batch)
            prefix = 0
            while prefix + 1 in held:
                prefix += 1
            assert outcome.acked_through == prefix
        with db.sessionmaker() as session:
            from sqlalchemy import select

            from central.models import Result

            seqs = session.scalars(select(Result.seq).where(Result.device_id == device_id)).all()
        assert sorted(seqs) == sorted(held)

    check()


def test_concurrent_overlapping_batches_of_one_device(store) -> None:
    """Retries racing their originals: the device-row lock keeps storage and watermark exact."""
    import random
    import threading

    db, devices = store
    cache = ClassCache()
    with db.sessionmaker() as session:
        device_id = devices.create_device(session, "s")[0].id
    rng = random.Random(5)
    batches = [sorted(rng.sample(range(1, 301), 60)) for _ in range(24)] + [list(range(1, 301))]
    rng.shuffle(batches)
    stored: list[int] = []
    errors: list[BaseException] = []

    def send(chunk: list[list[int]]) -> None:
        try:
            for batch in chunk:
                with db.sessionmaker() as session:
                    stored.append(ingest(session, device_id, [_result(s) for s in batch], cache).stored)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(batches[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(stored) == 300
    with db.sessionmaker() as session:
        from central.models import Device

        assert session.get(Device, device_id).acked_through == 300


def test_the_watermark_reads_nothing_while_a_gap_stays_open(store) -> None:
    """O(batch): batches beyond a gap never scan; filling the gap walks the stored run once."""
    from sqlalchemy import event

    db, devices = store
    cache = ClassCache()
    with db.sessionmaker() as session:
        device_id = devices.create_device(session, "s")[0].id
    scans: list[str] = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        # The watermark walks the exactly-once ledger (result_keys), not the partitioned rows.
        if "FROM result_keys" in statement and "ORDER BY result_keys.seq" in statement:
            scans.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        for start in range(2, 2002, 200):
            with db.sessionmaker() as session:
                outcome = ingest(session, device_id, [_result(s) for s in range(start, start + 200)], cache)
            assert outcome.acked_through == 0
        assert scans == []
        with db.sessionmaker() as session:
            assert ingest(session, device_id, [_result(1)], cache).acked_through == 2001
        assert 1 <= len(scans) <= 2001 // 512 + 1  # windows of max(len(batch) + 1, 512) rows
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
