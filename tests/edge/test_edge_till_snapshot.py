"""Bootstrap from head office (issue 11): a signed store snapshot of the customer state, built by
the factory from the log up to a date, continues on the till exactly like events alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from edge_runtime.customer_state import NoRecordError
from edge_runtime.exceptions import SignatureError
from edge_runtime.runtime import Runtime, customer_ref_for
from edge_runtime.state_snapshot import SnapshotError
from factory.features import LogColumns, load_transactions
from factory.skew import log_events, program_for_log
from factory.state_snapshot import build_state_snapshot

REPO = Path(__file__).resolve().parents[2]
SECRET = "store-42-deployment-secret-0123"
UNTIL, AT = "2011-06-01", "2011-07-01"


@pytest.fixture(scope="module")
def store_log() -> pd.DataFrame:
    """The bundled log's lines before AT of 200 customers: one store's loyalty customers."""
    log = load_transactions(REPO / "data" / "online_retail" / "online_retail.parquet")[0]
    store = sorted(log["customer_id"].unique())[:200]
    return log.loc[log["customer_id"].isin(store) & (log["timestamp"] < AT)]


@pytest.fixture(scope="module")
def snapshot(store_log: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("snapshot")
    build_state_snapshot(None, UNTIL, folder, store="store-42", secret=SECRET,
                         customers=store_log["customer_id"].unique())  # fmt: skip
    return folder


def _runtime(artifact: Path, key: Path, folder: Path) -> Runtime:
    return Runtime(artifact, outbox_path=folder / "outbox.db", device_id="till-42", secret=SECRET, public_key=key)


def _records(runtime: Runtime, customers: list[str]) -> dict[str, Any]:
    out = {}
    for customer in customers:
        try:
            out[customer] = runtime.classify_customer(customer, AT).record
        except NoRecordError:
            out[customer] = None
    return out


def test_snapshot_then_later_events_equal_events_alone(
    store_log: pd.DataFrame, snapshot: Path, till_artifact: Path, signing_public_key: Path, tmp_path: Path
) -> None:
    info = json.loads((snapshot / "snapshot.json").read_text())
    before = store_log.loc[store_log["timestamp"] < UNTIL]
    assert (info["store"], info["until"]) == ("store-42", "2011-06-01T00:00:00")
    assert (info["customers"], info["lines"]) == (before["customer_id"].nunique(), len(before))
    program = program_for_log(store_log, LogColumns.online_retail())
    events = list(log_events(store_log, program))
    customers = sorted({customer for _, customer in events})
    (tmp_path / "till").mkdir()
    (tmp_path / "alone").mkdir()
    with _runtime(till_artifact, signing_public_key, tmp_path / "till") as till:
        installed = till.bootstrap_customer_state(snapshot)
        assert installed.customers == info["customers"]
        for event, _ in events:
            if event["timestamp"] >= UNTIL:
                till.observe(event)
        continued = _records(till, customers)
    with _runtime(till_artifact, signing_public_key, tmp_path / "alone") as alone:
        for event, _ in events:
            alone.observe(event)
        expected = _records(alone, customers)
    assert sum(record is not None for record in expected.values()) > 100
    assert continued == expected


def test_a_tampered_or_foreign_snapshot_is_refused(
    snapshot: Path, till_artifact: Path, signing_public_key: Path, tmp_path: Path
) -> None:
    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(snapshot, target)
        return target

    state = copy("state")
    data = bytearray((state / "customer_state.sqlite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (state / "customer_state.sqlite").write_bytes(bytes(data))
    manifest = copy("manifest")
    text = (manifest / "snapshot.json").read_text().replace('"store-42"', '"store-43"')
    (manifest / "snapshot.json").write_text(text)
    with _runtime(till_artifact, signing_public_key, tmp_path) as till:
        with pytest.raises(SnapshotError, match=r"customer_state.sqlite sha256 .* does not match the signed snapshot"):
            till.bootstrap_customer_state(state)
        with pytest.raises(SignatureError, match="snapshot.json signature does not verify"):
            till.bootstrap_customer_state(manifest)
        assert not till.customer_state_path.exists()  # nothing installed
        till.observe({"customer_id": "x1", "timestamp": "2011-06-02T10:00", "invoice_id": "9", "country": "EIRE",
                      "lines": [{"product": "22423", "quantity": 1.0, "unit_price": 12.75}]})  # fmt: skip
        with pytest.raises(SnapshotError, match=r"already holds 1 customer\(s\)"):
            till.bootstrap_customer_state(snapshot)
        assert till.bootstrap_customer_state(snapshot, replace=True).store == "store-42"
    other = Runtime(till_artifact, outbox_path=tmp_path / "o2.db", device_id="t", secret="another-secret-0123456789",
                    public_key=signing_public_key)  # fmt: skip
    with other, pytest.raises(SnapshotError, match="another deployment secret"):
        other.bootstrap_customer_state(snapshot)


def test_the_snapshot_keys_customers_by_the_deployments_pseudonym(till_artifact: Path, tmp_path: Path) -> None:
    with Runtime(till_artifact, outbox_path=tmp_path / "o.db", device_id="t", secret=SECRET) as runtime:
        assert runtime.customer_ref("12347") == customer_ref_for(SECRET, "12347") == customer_ref_for(SECRET, 12347)


def test_snapshot_commands_head_office_to_till(
    till_artifact: Path, signing_public_key: Path, isolated_key_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from edge_runtime.cli import main as edge
    from factory.cli import main as factory

    (tmp_path / "store.txt").write_text("12347\n12348\n17850\n", encoding="utf-8")
    args = ["state-snapshot", "--until", "2011-01-01", "--store", "s7", "--customers", str(tmp_path / "store.txt"),
            "--out", str(tmp_path / "snap")]  # fmt: skip
    monkeypatch.delenv("EDGESEG_SECRET", raising=False)
    assert factory(args) == 2
    assert "EDGESEG_SECRET is not set" in capsys.readouterr().err
    monkeypatch.setenv("EDGESEG_SECRET", SECRET)
    assert factory([*args, "--key-dir", str(isolated_key_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["customers"] == 3
    device = ["--artifact", str(till_artifact), "--public-key", str(signing_public_key),
              "--outbox", str(tmp_path / "outbox.db"), "--device-id", "till-7"]  # fmt: skip
    assert edge(["bootstrap-state", str(tmp_path / "snap"), *device]) == 0
    assert json.loads(capsys.readouterr().out)["store"] == "s7"
    (tmp_path / "snap" / "snapshot.sig").write_text('{"algorithm": "ed25519", "signature": "AAAA"}')
    assert edge(["bootstrap-state", str(tmp_path / "snap"), "--replace", *device]) == 1
    assert capsys.readouterr().err.startswith("edge-runtime bootstrap-state: snapshot refused: ")
