"""The till end to end (issue 11): events through ``edge-runtime serve`` → segments → outbox →
``edge-runtime sync`` → central, equal to the factory's offline features run through the model.

A real default-job model (Online Retail → RFM+X → value tier, ``till_artifact``) serves in an
``edge-runtime serve`` process; the bundled log's events of a group of customers, in time order,
go one by one to ``POST /events`` (each answer is the customer's segment after that event, at
the model's cutoff). A real central (uvicorn on SQLite) receives the outbox through
``edge-runtime sync``. Each customer's latest segment at central must be the segment the same
model gives to the factory's pandas features of that customer at the cutoff: the till computed
its inputs itself and got the offline answer, customer by customer (so the mix is equal too).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from central_helpers import sqlite_central, upload_body

from edge_runtime.classifier import Classifier
from edge_runtime.runtime import customer_ref_for
from factory.features import LogColumns, build_customer_features, load_transactions
from factory.skew import log_events, program_for_log

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SECRET = "till-e2e-deployment-secret-012345"
CUTOFF = "2011-09-10"  # tests/conftest.py TILL_CUTOFF: the model's features are at this date


def _post(port: int, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", f"/events?at={CUTOFF}", json.dumps(event), {"Content-Type": "application/json"})
    response = conn.getresponse()
    answer = (response.status, json.loads(response.read()))
    conn.close()
    return answer


def test_segments_from_till_events_reach_central_equal_to_the_offline_features(
    till_artifact: Path, signing_public_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_runtime.cli import main as edge

    log = load_transactions(REPO / "data" / "online_retail" / "online_retail.parquet")[0]
    log = log.loc[log["timestamp"] < CUTOFF]
    # 40 customers of one country with several baskets each, plus whatever returns they made.
    counts = log.loc[log["country"] == "Germany"].groupby("customer_id")["invoice_id"].nunique()
    customers = sorted(counts[counts >= 3].index)[:40]
    store = log.loc[log["customer_id"].isin(customers)]
    events = [event for event, _ in log_events(store, program_for_log(log, LogColumns.online_retail()))]

    central = sqlite_central(tmp_path, signing_public_key)
    central.start()
    try:
        central.call("POST", "/v1/models", upload_body(till_artifact))
        device = central.call("POST", "/v1/devices", {"store": "till-store"})
        env = {**os.environ, "EDGESEG_ARTIFACT": str(till_artifact), "EDGESEG_PUBLIC_KEY": str(signing_public_key),
               "EDGESEG_OUTBOX": str(tmp_path / "outbox.db"), "EDGESEG_DEVICE_ID": device["id"],
               "EDGESEG_SECRET": SECRET}  # fmt: skip
        for name in ("EDGESEG_CONFIG", "EDGESEG_HOST", "EDGESEG_PORT", "EDGESEG_DURABILITY"):
            env.pop(name, None)
        serve = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "serve", "--port", "0"],
                                 stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
        try:
            line = serve.stderr.readline()  # type: ignore[union-attr]
            assert " on http://127.0.0.1:" in line, line
            port = int(line.rsplit(":", 1)[1])
            answers = [_post(port, event) for event in events]
        finally:
            serve.send_signal(signal.SIGTERM)
            assert serve.wait(timeout=30) == 0
        assert {status for status, _ in answers} == {200}
        classified = [answer for _, answer in answers if answer["segment"] is not None]

        for name, value in env.items():
            if name.startswith("EDGESEG_"):
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("EDGESEG_DEVICE_TOKEN", device["token"])
        assert edge(["sync", "--central", central.url, "--allow-http"]) == 0
        with sqlite3.connect(tmp_path / "central.db") as db:
            stored = db.execute("SELECT COUNT(*) FROM results WHERE device_id = ?", (device["id"],)).fetchone()[0]
            latest = dict(
                db.execute(
                    "SELECT customer_ref, segment FROM results WHERE id IN "
                    "(SELECT MAX(id) FROM results WHERE device_id = ? GROUP BY customer_ref)",
                    (device["id"],),
                ).fetchall()
            )
    finally:
        central.kill()
    assert stored == len(classified)  # every segment the till answered is at central, once

    offline = build_customer_features(log, CUTOFF).loc[customers]
    model = Classifier.load(till_artifact, signing_public_key)
    expected = {
        customer_ref_for(SECRET, customer): model.classify(record).segment
        for customer, record in offline.astype(object).where(offline.notna(), None).to_dict(orient="index").items()
    }
    assert latest == expected
    assert Counter(latest.values()) == Counter(expected.values())
    assert len(expected) == 40 and len(set(expected.values())) > 1  # a mix, not one segment
