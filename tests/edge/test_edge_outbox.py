"""The outbox API the sync client codes against, and Runtime's write-before-return."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import sqlite3
import threading

import numpy as np
import pytest
from edge_toy_artifact import GOLDEN_RECORDS

from edge_runtime import Classifier, Outbox, Runtime, SchemaError

SECRET = "s3cret-deployment-key-0123456789"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_append_pending_mark_synced_roundtrip(tmp_path):
    box = Outbox(tmp_path / "o.db", device_id="till-1")
    assert (box.last_seq(), box.backlog(), box.pending(10)) == (0, 0, [])
    seqs = [
        box.append(segment="A", probabilities={"A": 0.75, "B": 0.25}, model_version="m/1",
                   customer_ref="ab" * 16),
        box.append(segment="B", probabilities={"A": 0.125, "B": 0.875}, model_version="m/1"),
        box.append(segment="x", probabilities={"x": 1.0}, model_version="n/2",
                   classified_at_us=1_764_158_400_123_456),
    ]  # fmt: skip
    assert seqs == [1, 2, 3]
    pending = box.pending(2)
    assert [sorted(p) for p in pending] == [
        ["classified_at", "customer_ref", "model_version", "probabilities", "segment", "seq"]
    ] * 2
    assert pending[0]["seq"] == 1 and pending[0]["customer_ref"] == "ab" * 16
    assert pending[0]["probabilities"] == {"A": 0.75, "B": 0.25}
    assert pending[1]["customer_ref"] is None and pending[1]["segment"] == "B"
    assert all(ISO.match(p["classified_at"]) for p in pending)
    assert box.pending(10)[2] == {
        "seq": 3, "customer_ref": None, "segment": "x", "probabilities": {"x": 1.0},
        "model_version": "n/2", "classified_at": "2025-11-26T12:00:00.123Z",
    }  # fmt: skip
    assert box.mark_synced([1, 3]) == 2
    assert box.mark_synced([1, 3, 99]) == 0  # idempotent
    assert [p["seq"] for p in box.pending(10)] == [2]
    assert (box.backlog(), box.last_seq()) == (1, 3)
    box.close()
    reopened = Outbox(tmp_path / "o.db", device_id="till-1")
    assert reopened.append(segment="A", probabilities={"A": 1.0}, model_version="m/1") == 4
    with sqlite3.connect(tmp_path / "o.db") as db:  # synced rows are kept, never deleted
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 4
    reopened.close()


def test_parameters_are_checked(tmp_path):
    with pytest.raises(ValueError) as caught:
        Outbox(tmp_path / "o.db", device_id="d", durability="disk")
    assert str(caught.value) == (
        "The 'durability' parameter of Outbox must be one of ('process', 'power'). Got 'disk' instead."
    )
    Outbox(tmp_path / "o.db", device_id="d").close()
    with pytest.raises(ValueError) as caught:
        Outbox(tmp_path / "o.db", device_id="e")
    assert str(caught.value) == (
        f"outbox {str(tmp_path / 'o.db')!r} belongs to device 'd', not 'e': seq numbers are "
        "per device, use another file"
    )


@pytest.mark.parametrize(("durability", "level"), [("process", 1), ("power", 2)])
def test_durability_sets_wal_and_synchronous(tmp_path, durability, level):
    box = Outbox(tmp_path / "o.db", device_id="d", durability=durability)
    assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == level
    box.close()


def test_backlog_warning_is_loud_but_drops_nothing(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="edge_runtime")
    box = Outbox(tmp_path / "o.db", device_id="d", max_backlog=20)
    for _ in range(24):
        box.append(segment="A", probabilities={"A": 1.0}, model_version="m/1")
    messages = [r.getMessage() for r in caplog.records if r.name == "edge_runtime"]
    assert messages == [
        f"outbox {tmp_path / 'o.db'} holds {n} unsynced results, more than max_backlog=20: "
        "sync is not keeping up; nothing is dropped, but the file keeps growing"
        for n in (21, 23)
    ]
    status = box.status()
    assert (status["backlog"], status["backlog_exceeded"], status["last_seq"]) == (24, True, 24)
    box.mark_synced([1, 2, 3, 4])
    assert box.status()["backlog_exceeded"] is False
    box.close()


@pytest.fixture()
def runtime(toy_artifact, toy_public_key, tmp_path):
    with Runtime(
        toy_artifact, outbox_path=tmp_path / "outbox.db", device_id="till-9", secret=SECRET,
        public_key=toy_public_key,
    ) as rt:  # fmt: skip
        yield rt


def test_runtime_writes_before_returning_with_pseudonymised_id(runtime, tmp_path):
    record = dict(GOLDEN_RECORDS[0], ID="462809")
    result = runtime.classify(record)
    assert result.seq == 1 == runtime.outbox.last_seq()
    stored = runtime.outbox.pending(1)[0]
    expected_ref = hmac.new(SECRET.encode(), b"462809", hashlib.sha256).hexdigest()[:32]
    assert stored["customer_ref"] == expected_ref == runtime.customer_ref("462809")
    assert runtime.customer_ref(462809) == expected_ref  # an int id is the same customer
    assert (stored["segment"], stored["probabilities"], stored["model_version"]) == (
        result.segment, result.probabilities, result.model_version,
    )  # fmt: skip
    assert runtime.classify(GOLDEN_RECORDS[1]).seq == 2  # no id field -> no ref
    assert runtime.outbox.pending(2)[1]["customer_ref"] is None
    with pytest.raises(SchemaError) as caught:
        runtime.classify(dict(GOLDEN_RECORDS[0], ID=4.5))
    assert str(caught.value) == "field 'ID': must be a string or an integer customer id (got 4.5)"
    with pytest.raises(SchemaError):
        runtime.classify(dict(GOLDEN_RECORDS[0], Age="old"))
    assert runtime.outbox.last_seq() == 2  # refused records are not stored
    runtime.outbox.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.db*"))
    assert b"462809" not in raw and b"Healthcare" not in raw  # no raw id, no raw features


def test_runtime_secret_is_checked(toy_artifact, toy_public_key, tmp_path):
    with pytest.raises(ValueError) as caught:
        Runtime(toy_artifact, outbox_path=tmp_path / "o.db", device_id="d", secret="short",
                public_key=toy_public_key)  # fmt: skip
    assert str(caught.value) == (
        "The 'secret' parameter of Runtime must be at least 16 bytes (a per-deployment random "
        "key). Got 5 bytes instead."
    )


def test_runtime_batch_and_threads_give_contiguous_seqs(runtime):
    batch = runtime.classify_many([dict(r, ID=str(i)) for i, r in enumerate(GOLDEN_RECORDS)])
    assert batch.seqs.tolist() == [1, 2, 3, 4]
    columns = {"Age": np.arange(18, 18 + 300, dtype=np.float64) % 70 + 18,
               "ID": [f"c{i}" for i in range(300)]}  # fmt: skip
    assert runtime.classify_many(columns).seqs.tolist() == list(range(5, 305))
    seen: list[int] = []

    def work() -> None:
        for _ in range(100):
            seen.append(runtime.classify(GOLDEN_RECORDS[2]).seq)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(305, 705))
    pending = runtime.outbox.pending(1000)
    assert [p["seq"] for p in pending] == list(range(1, 705))
    assert pending[0]["customer_ref"] == runtime.customer_ref("0")
    assert pending[4]["customer_ref"] == runtime.customer_ref("c0")


def test_drift_snapshot_counts_align_with_reference_bins(runtime):
    runtime.classify({"Age": 18, "Gender": "Male"})  # first edge -> bin 0 (edges 18, 32.2, ...)
    runtime.classify({"Age": 89, "Gender": "Robot"})  # last edge -> last bin; unseen -> other
    runtime.classify({"Age": 40, "Work_Experience": 99.0})  # beyond the range -> last bin
    runtime.classify_many({"Age": np.array([30.0, 60.0]), "Gender": np.array(["Female", ""])})
    snap = runtime.drift_snapshot()
    assert snap["model_version"] == "toy-seg/20261127T000000Z" and snap["rows"] == 5
    edges = np.linspace(18, 89, 6).tolist()
    assert snap["inputs"]["Age"] == {"type": "number", "bin_edges": edges,
                                     "counts": [2, 1, 1, 0, 1, 0]}  # fmt: skip
    assert snap["inputs"]["Work_Experience"]["counts"] == [0, 0, 0, 0, 1, 4]
    assert snap["inputs"]["Gender"] == {"type": "string", "categories": ["Female", "Male"],
                                        "counts": [1, 1, 1, 2]}  # fmt: skip
    assert runtime.drift_snapshot(reset=True)["rows"] == 5
    assert runtime.drift_snapshot()["rows"] == 0


def test_runtime_accepts_a_loaded_classifier(toy_artifact, toy_public_key, tmp_path):
    clf = Classifier.load(toy_artifact, toy_public_key)
    with Runtime(clf, outbox_path=tmp_path / "o.db", device_id="d", secret=SECRET) as rt:
        assert rt.classify(GOLDEN_RECORDS[0]).seq == 1
        status = rt.status()
    assert status["model_version"] == "toy-seg/20261127T000000Z"
    assert status["outbox"]["last_seq"] == 1
    assert status["inputs"]["records"] == 1


def test_out_of_order_acks_advance_the_watermark(tmp_path):
    box = Outbox(tmp_path / "o.db", device_id="d")
    for _ in range(5):
        box.append(segment="A", probabilities={"A": 1.0}, model_version="m/1")
    assert box.mark_synced([4, 2]) == 2
    assert [p["seq"] for p in box.pending(10)] == [1, 3, 5]
    assert box.backlog() == 3
    assert box.mark_synced([1]) == 1
    assert box.mark_synced(iter([3])) == 1
    assert box._synced_through() == 4
    assert box._db.execute("SELECT COUNT(*) FROM synced_above").fetchone()[0] == 0
    assert box.mark_synced([5, 6, 0, -1]) == 1  # seqs never stored are ignored
    assert (box.backlog(), box.pending(10)) == (0, [])
    box.close()
    assert not box._checkpointer.is_alive()
    reopened = Outbox(tmp_path / "o.db", device_id="d")
    assert (reopened.backlog(), reopened.last_seq(), reopened.pending(5)) == (0, 5, [])
    reopened.close()


def test_batch_ids_numpy_ints_and_bad_id_row(runtime):
    batch = runtime.classify_many({"Age": np.array([30.0, 40.0]), "ID": np.array([462809, 7])})
    refs = [p["customer_ref"] for p in runtime.outbox.pending(2)]
    assert refs == [runtime.customer_ref("462809"), runtime.customer_ref(7)]
    assert batch.seqs.tolist() == [1, 2]
    with pytest.raises(SchemaError) as caught:
        runtime.classify_many([dict(GOLDEN_RECORDS[0], ID="a"), dict(GOLDEN_RECORDS[0], ID=1.5)])
    assert str(caught.value) == ("record 1: field 'ID': must be a string or an integer customer id (got 1.5)")
    assert runtime.outbox.last_seq() == 2  # nothing of the refused batch was stored


def test_two_writers_on_one_file_share_one_gapless_sequence(tmp_path):
    """The CLI may classify into the outbox while `serve` writes to it (two connections)."""
    a = Outbox(tmp_path / "o.db", device_id="d")
    b = Outbox(tmp_path / "o.db", device_id="d")
    seqs = []
    for i in range(50):
        box = a if i % 3 else b
        seqs.append(box.append(segment="A", probabilities={"A": 1.0}, model_version="m/1"))
    assert seqs == list(range(1, 51))
    assert a.mark_synced(range(1, 26)) == 25
    assert b.backlog() == 25 and [p["seq"] for p in b.pending(3)] == [26, 27, 28]
    a.close()
    b.close()
