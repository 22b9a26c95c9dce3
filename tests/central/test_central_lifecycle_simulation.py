"""Acceptance of issue 12: a time-travel simulation on the bundled Online Retail log.

Monthly cutoffs, a retrain each month (short searches), a fleet of four stores (real Runtimes,
outboxes, long-polling watchers) against a real central over HTTP on SQLite and PostgreSQL
(``scripts/retrain_demo.py``, which ``make retrain-demo`` runs for a person). The numbers are
printed (run with ``-s`` to see them) and written to test-artifacts/lifecycle_<backend>.json.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _demo() -> Any:
    spec = importlib.util.spec_from_file_location("retrain_demo", ROOT / "scripts" / "retrain_demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["retrain_demo"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def demo() -> Any:
    return _demo()


@pytest.fixture(scope="module")
def models(demo: Any, tmp_path_factory: pytest.TempPathFactory, isolated_key_dir: Path) -> Any:
    """The first champion and three monthly retrains (built once for both back ends)."""
    return demo.build_models(tmp_path_factory.mktemp("lifecycle_models"))


def test_the_gate_stops_the_shuffled_challenger_and_passes_the_others(models: Any) -> None:
    gates = models.gates
    print(json.dumps({m: {k: g[k] for k in ("decision", "difference", "ci", "reasons")} for m, g in gates.items()}))
    assert gates["C"]["decision"] == "keep_champion" and gates["C"]["difference"] < 0
    for month in ("A", "B"):
        assert gates[month]["decision"] == "promote", gates[month]["reasons"]
        assert gates[month]["ci"][0] > 0


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_time_travel_fleet(
    backend: str, demo: Any, models: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'central.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    public_key = Path(os.environ["EDGESEG_KEY_DIR"]) / "signing_key.pub.pem"
    shot = ROOT / "test-artifacts" / f"lifecycle_timeline_{backend}.png"
    numbers = demo.run_fleet(models, url, tmp_path / "fleet", public_key, screenshot=shot)
    out = ROOT / "test-artifacts" / f"lifecycle_{backend}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({**numbers, "gates": models.gates, "retrain_s": models.retrain_s}, indent=2, default=str))
    versions = numbers["versions"]
    champion, month_a, month_b = versions["champion"], versions["A"], versions["B"]

    # Month A: passed the gate, worse in the field on the canary -> rolled back automatically, and
    # every canary device runs the previous model again.
    assert numbers["A"]["state"] == "rolled_back", numbers["A"]["reason"]
    assert numbers["A"]["canary"]["accuracy"] < numbers["A"]["champion"]["accuracy"]
    assert set(numbers["A"]["switch_s"]) == set(demo.CANARY)  # each canary device switched back
    # Month B: normal, promoted through the canary to every store.
    assert numbers["B"]["state"] == "promoted", numbers["B"]["reason"]
    assert numbers["B"]["canary"]["accuracy"] >= numbers["B"]["champion"]["accuracy"] - 0.02
    assert set(numbers["running"].values()) == {month_b}
    assert champion < month_a < month_b
    # Month C: trained on shuffled labels, stopped at the gate; central refuses to roll it out.
    assert numbers["C"]["refused"] and "promotion gate kept the champion" in numbers["C"]["refused"]
    # Every classified result reached central once, under the version that classified it.
    assert numbers["results"] > 0 and numbers["lost"] == 0 and numbers["misattributed"] == 0
    if numbers.get("screenshot"):  # the dashboard's timeline, rendered in Chromium
        assert shot.stat().st_size > 5_000
    timeline = "\n".join(numbers["timeline"])
    for step in ("started", "evaluated", "rolled_back", "promoted"):
        assert step in timeline
