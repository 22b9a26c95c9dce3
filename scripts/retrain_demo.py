"""A model that keeps learning, end to end on the bundled Online Retail log (issue 12).

    make retrain-demo                       # SQLite, prints the numbers and the rollout timeline
    .venv/bin/python scripts/retrain_demo.py --database-url postgresql+psycopg://...

Time travel with monthly cutoffs and a 30-day outcome horizon H. Each month the factory retrains
the champion on the newest matured window (``factory.retrain``); a fleet of four stores (real
``Runtime``s with outboxes, ``ModelWatcher`` long-polling a real central over HTTP, on SQLite or
PostgreSQL) classifies that month's customers, syncs, and head office reports each customer's
outcome when it matures (H days later); central's staged rollout decides
(``central.services.rollouts.evaluate_rollouts`` with the simulated clock, as cron would).

* month A, worse in the field: the challenger passes the gate, but the canary stores' tills send
  shifted inputs (a units bug: amounts in cents, counts ten times over, recency always 0); the canary is worse
  than the champion stores over the same days, central rolls it back with the operator's
  pre-signed orders, and every canary device runs the previous model again;
* month B, normal: the challenger passes the gate, goes to the canary stores, is as good there as
  the champion on the other stores, and is promoted to every store;
* month C, broken (trained on shuffled labels): the gate keeps the champion (now B); central
  refuses to roll it out.

Every classified result is at central exactly once, under the model version that produced it.
The first champion is built when the shop has six weeks of history (cutoff 2011-01-16, labels
to 2011-02-15); each challenger trains on a month's newer data and beats it on macro F1 (on
~3,000 customers a paired bootstrap interval of a macro F1 difference is about +-0.035 wide).
Devices stamp results with the simulated day (the outbox's clock is moved, nothing else), so
"the same days" of the comparison are the simulated month's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HORIZON = 30
CHAMPION_CUTOFF = "2011-02-15"  # the first model: six weeks of history
MONTHS = {"A": "2011-07-01", "B": "2011-09-01", "C": "2011-10-01"}  # newest matured window T; present = T + H
SHUFFLED = "C"
STORES = ("store-1", "store-2", "store-3", "store-4")
CANARY = ("store-1", "store-3")
SECRET = "demo-deployment-secret-0123456789abcdef"
ADMIN = "demo-admin-token-0123456789abcdefghijkl"


@dataclass
class Models:
    """The factory's side: the first champion and each month's challenger with its gate."""

    champion: Path
    challengers: dict[str, Path] = field(default_factory=dict)
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)
    retrain_s: dict[str, float] = field(default_factory=dict)


# Each search stops after this many trials (the time budget is only a cap): the gate's numbers
# must not depend on how busy the machine is, as a time-only budget made them (a loaded machine
# ran fewer trials and once kept the champion in a normal month).
TRIALS = 25
# The demo's budget for p99 latency, far above what its models measure (tens of us): with
# the default 50 us, a trial near the line was feasible on a quiet machine and not on a busy one,
# which changed the search's path and the champion, and once left month A's gain inside the
# gate's interval (CI, 2026-11-30). The size budget, which does not depend on timing, stays.
LATENCY_BUDGET_US = 5000.0


def build_models(
    out_dir: Path, *, time_budget_s: float = 120.0, max_trials: int = TRIALS, say: Callable[[str], None] = print
) -> Models:
    """The first champion, then month A (normal), B (normal) and C (shuffled labels) retrains; A
    and B against the first champion (A is rolled back in the field), C against B (promoted)."""
    import logging
    import warnings

    from factory import build
    from factory.retrain import retrain, window_tables

    warnings.filterwarnings("ignore")
    logging.getLogger("edge_runtime").setLevel(logging.ERROR)
    tables = window_tables(None, horizon_days=HORIZON, dormant_days=30, cutoff=CHAMPION_CUTOFF)
    info = {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in tables.train_info.items()}
    first = build(
        tables.train, target="value_tier", id_column="customer_id", name="retail-life", out_dir=out_dir,
        time_budget_s=time_budget_s, max_trials=max_trials, learners=("lgbm",), seed=0, data_report=info,
        latency_budget_us=LATENCY_BUDGET_US,
        label_rule=info["thresholds"],
    )  # fmt: skip
    models = Models(first.artifact_dir)
    say(f"champion {first.model_version}: trained at cutoff {tables.window['train_cutoff'][:10]}")
    for month, cutoff in MONTHS.items():
        champion = models.challengers["B"] if month == "C" else first.artifact_dir
        started = time.perf_counter()
        result = retrain(
            champion,
            cutoff=cutoff,
            time_budget_s=time_budget_s,
            max_trials=max_trials,
            shuffle_labels=month == SHUFFLED,
            resamples=500,
        )
        models.retrain_s[month] = time.perf_counter() - started
        models.challengers[month] = result.artifact_dir
        gate = result.gate.section
        models.gates[month] = gate
        metric = gate["metric"]
        say(
            f"month {month} (window {cutoff}): retrain {result.manifest.model_version} "
            f"in {models.retrain_s[month]:.1f} s{' on SHUFFLED labels' if month == SHUFFLED else ''}; "
            f"{metric} {gate['challenger'][metric]:.4f} vs champion "
            f"{gate['champion'][metric]:.4f}, diff {gate['difference']:+.4f}, 95% CI [{gate['ci'][0]:+.4f}, "
            f"{gate['ci'][1]:+.4f}] -> gate: {gate['decision']}"
        )
    return models


# ----------------------------------------------------------------------------- central
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Central:
    """The real central app on loopback HTTP (uvicorn in a thread) and its database."""

    def __init__(self, database_url: str, public_key_path: Path) -> None:
        import uvicorn

        from central.core.config import Settings
        from central.core.db import Database
        from central.core.migrate import upgrade
        from central.main import create_app

        self.settings = Settings(
            env="test", database_url=database_url, admin_token=ADMIN, public_key_path=public_key_path,
            max_future_skew_s=86400,
        )  # fmt: skip
        self.db = Database.from_url(database_url)
        upgrade(self.db.engine)
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(create_app(self.settings), host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("central did not start")
            time.sleep(0.05)

    def post(self, path: str, body: Any) -> Any:
        import urllib.request

        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.db.dispose()


# ----------------------------------------------------------------------------- the fleet
class _DayClock:
    """The outbox's ``time`` module with ``time_ns`` at a simulated day (the rest is real)."""

    def __init__(self, ns: int) -> None:
        self.ns = ns

    def time_ns(self) -> int:
        return self.ns

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class Device:
    """One store's till: Runtime + outbox, the updater and a long-poll watcher in a thread."""

    def __init__(self, central: Central, store: str, folder: Path, public_key: Path) -> None:
        from central.services.devices import create_device
        from edge_runtime.client import HeadOfficeClient, RetryPolicy
        from edge_runtime.model_watch import ModelWatcher
        from edge_runtime.runtime import Runtime
        from edge_runtime.sync import SyncClient
        from edge_runtime.updates import ModelUpdater

        with central.db.sessionmaker() as session:
            device, token = create_device(session, store)
            self.id = device.id
        self.store = store
        self.head_office = HeadOfficeClient(
            central.url, device_id=self.id, token=token, allow_http=True, timeout=30,
            retry=RetryPolicy(max_retries=3, backoff_base=0.05, backoff_cap=0.5),
        )  # fmt: skip
        self.updater = ModelUpdater(self.head_office, public_key=public_key, models_dir=folder / "models")
        report = self.updater.update()
        installed = self.updater.current_dir
        assert report.status == "installed" and installed is not None, report
        self.runtime = Runtime(
            installed, outbox_path=folder / "outbox.sqlite", device_id=self.id, secret=SECRET,
            public_key=public_key,
        )  # fmt: skip
        self.sync = SyncClient(self.head_office)
        self.watcher = ModelWatcher(
            self.updater,
            runtime=self.runtime,
            poll_interval_s=2.0,
            long_poll_s=5.0,
            jitter_s=1.5,
            random_state=STORES.index(store),
        )
        self.switches: list[tuple[float, str, str]] = []  # (monotonic time, status, model version)
        self.ledger: dict[int, tuple[str, str]] = {}  # seq -> (customer_ref, model version) as classified here
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watcher.run, args=(self.stop, self._switched), daemon=True)
        self.thread.start()

    def _switched(self, report: Any) -> None:
        self.switches.append((time.monotonic(), report.status, report.model_version))

    def classify(self, table: Any, *, shift: bool, day: dt.datetime) -> int:
        """This store's customers of the month, in one batch into the outbox (stamped ``day``),
        then synced."""
        from unittest import mock

        import edge_runtime.outbox as outbox_module

        manifest = self.runtime.classifier.manifest
        columns = {spec.name: table[spec.name].to_numpy() for spec in manifest.inputs}
        if shift:  # the canary tills' bug: money in cents, counts ten times over, recency 0
            for name in ("monetary", "avg_basket_value"):
                columns[name] = columns[name] * 100.0
            for name in ("frequency", "avg_basket_items", "product_breadth", "category_breadth"):
                columns[name] = columns[name] * 10
            columns["recency_days"] = columns["recency_days"] * 0.0
        columns["customer_id"] = table["ref_id"].to_numpy()
        clock = _DayClock(int(day.replace(tzinfo=dt.UTC).timestamp() * 1e9))
        with mock.patch.object(outbox_module, "time", clock):
            batch = self.runtime.classify_many(columns)
        assert batch.seqs is not None, "a Runtime's batch has outbox seqs"
        for raw, seq in zip(table["ref_id"], batch.seqs, strict=True):
            self.ledger[int(seq)] = (self.runtime.customer_ref(raw), batch.model_version)
        self.sync.sync_once(self.runtime.outbox)
        return len(batch.segments)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        self.runtime.close()


def _wait_for(devices: list[Device], version: str, since: float, timeout: float = 60.0) -> dict[str, float]:
    """Seconds from ``since`` until each device runs ``version`` (its watcher's switch)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(d.runtime.model_version == version for d in devices):
            break
        time.sleep(0.05)
    else:
        running = {d.store: d.runtime.model_version for d in devices}
        raise RuntimeError(f"devices did not switch to {version} within {timeout} s: {running}")
    times = {}
    for d in devices:
        hits = [t for t, _, v in d.switches if v == version and t >= since]
        times[d.store] = (hits[0] if hits else time.monotonic()) - since
    return times


def _month_table(cutoff: str) -> Any:
    """The customers of the month (features at the present, ``cutoff``) and their outcomes over
    the next H days, split over the stores by a hash of the customer id."""
    import zlib

    from factory.retrain import window_tables

    table = window_tables(None, horizon_days=HORIZON, dormant_days=30, cutoff=cutoff).evaluation
    table = table.assign(
        ref_id=[f"{c}@{cutoff}" for c in table["customer_id"]],
        store=[STORES[zlib.crc32(str(c).encode()) % len(STORES)] for c in table["customer_id"]],
    )
    return table


def _report_outcomes(central: Central, devices: list[Device], table: Any) -> int:
    ref_of = devices[0].runtime.customer_ref
    outcomes = [
        {"customer_ref": ref_of(r), "actual_segment": s}
        for r, s in zip(table["ref_id"], table["value_tier"], strict=True)
    ]
    for start in range(0, len(outcomes), 5000):
        central.post("/v1/outcomes", {"outcomes": outcomes[start : start + 5000]})
    return len(outcomes)


def screenshot_timeline(url: str, path: Path) -> bool:
    """The dashboard's rollout timeline in headless Chromium (as the dashboard test renders the
    page); False when Playwright or Chromium is not installed."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return False
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        return False
    with sync_playwright() as playwright:
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"]
        browser = playwright.chromium.launch(executable_path=str(chromium), args=args)
        try:
            context = browser.new_context(
                http_credentials={"username": "head-office", "password": ADMIN}, viewport={"width": 1100, "height": 600}
            )
            page = context.new_page()
            response = page.goto(f"{url}/dashboard")
            if response is None or response.status != 200:
                return False
            path.parent.mkdir(parents=True, exist_ok=True)
            page.locator("#rollouts").screenshot(path=str(path))
        finally:
            browser.close()
    return True


def run_fleet(
    models: Models,
    database_url: str,
    workdir: Path,
    public_key: Path,
    *,
    say: Callable[[str], None] = print,
    screenshot: Path | None = None,
) -> dict[str, Any]:
    """The fleet months on one database; returns the numbers the test asserts. ``screenshot``:
    where to save the dashboard's rollout timeline (PNG)."""
    from sqlalchemy import select

    from central.models import Result
    from central.rollout_cli import timeline_lines
    from central.services import rollouts
    from central.services.errors import Rejected
    from central.services.models import register_artifact_dir
    from edge_runtime.artifact import read_manifest
    from factory.rollback import rollback_order
    from factory.signing import load_or_create_key

    version = {k: read_manifest(p).model_version for k, p in models.challengers.items()}
    version["champion"] = read_manifest(models.champion).model_version
    numbers: dict[str, Any] = {"versions": version}
    central = Central(database_url, public_key)
    devices: list[Device] = []
    key = load_or_create_key(None)
    try:
        with central.db.sessionmaker() as session:
            register_artifact_dir(session, models.champion, public_key, rollout_to="all", create_store=True)
            for month in ("A", "B", "C"):
                register_artifact_dir(session, models.challengers[month], public_key, rollout_to="none")
        devices = [Device(central, store, workdir / store, public_key) for store in STORES]
        canary = [d for d in devices if d.store in CANARY]

        def staged(month: str, present: dt.datetime, *, shift: bool) -> dict[str, Any]:
            challenger, champion = version[month], central_champion()
            orders = [rollback_order(challenger, champion, key) for _ in CANARY]
            since = time.monotonic()
            with central.db.sessionmaker() as session:
                rollout = rollouts.start_rollout(
                    session, challenger, canary=list(CANARY), watch_s=7 * 86400, rollback_orders=orders,
                    public_key_path=public_key, actor="ops@head-office", now=present, min_outcomes=200,
                )  # fmt: skip
                rollout_id = rollout.id
            switched = _wait_for(canary, challenger, since)
            say(
                f"  canary {', '.join(CANARY)} switched to {challenger} after "
                + ", ".join(f"{s} {t:.2f} s" for s, t in switched.items())
            )
            table = _month_table(present.strftime("%Y-%m-%d"))
            counts = {
                d.store: d.classify(table[table["store"] == d.store], shift=shift and d in canary, day=present)
                for d in devices
            }
            say(
                f"  classified {sum(counts.values())} customers ({counts})"
                + (" with shifted canary inputs" if shift else "")
            )
            n = _report_outcomes(central, devices, table)
            later = present + dt.timedelta(days=HORIZON)
            say(f"  {later:%Y-%m-%d}: {n} outcomes matured and reported")
            with central.db.sessionmaker() as session:
                [decided] = rollouts.evaluate_rollouts(
                    session, now=later, drift_threshold=central.settings.drift_psi_threshold,
                    public_key_path=public_key, max_future_skew_s=86400,
                )  # fmt: skip
                evidence = decided.events[-2].details if decided.state != "canary" else decided.events[-1].details
                state, reason = decided.state, decided.events[-1].reason
            c, h = evidence["canary"], evidence["champion"]
            say(
                f"  canary {c['model_version']}: accuracy {c['accuracy']:.4f}, macro recall {c['macro_recall']:.4f} on "
                f"{c['evaluated']} outcomes; champion stores {h['model_version']}: {h['accuracy']:.4f} / "
                f"{h['macro_recall']:.4f} on {h['evaluated']} -> {state}"
            )
            since = time.monotonic()
            target = challenger if state == "promoted" else champion
            moved = devices if state == "promoted" else canary
            switched = _wait_for(moved, target, since)
            say(f"  devices on {target} after " + ", ".join(f"{s} {t:.2f} s" for s, t in switched.items()))
            return {"rollout_id": rollout_id, "state": state, "reason": reason, "canary": c, "champion": h,
                    "switch_s": switched}  # fmt: skip

        def central_champion() -> str:
            from central.services.models import _current_rollout

            with central.db.sessionmaker() as session:
                entry = _current_rollout(session, None)
                assert entry is not None
                return entry.model_version

        present = {m: dt.datetime.fromisoformat(t) + dt.timedelta(days=HORIZON) for m, t in MONTHS.items()}
        say("month A (passes the gate, worse in the field):")
        numbers["A"] = staged("A", present["A"], shift=True)
        say("month B (normal):")
        numbers["B"] = staged("B", present["B"], shift=False)
        say("month C (shuffled labels):")
        with central.db.sessionmaker() as session:
            try:
                rollouts.start_rollout(
                    session, version["C"], canary=list(CANARY), watch_s=7 * 86400, rollback_orders=[],
                    public_key_path=public_key, actor="ops@head-office", now=present["C"],
                )  # fmt: skip
                numbers["C"] = {"refused": None}
            except Rejected as exc:
                numbers["C"] = {"refused": str(exc)}
        say(f"  central refuses to roll it out: {numbers['C']['refused']}")
        numbers["running"] = {d.store: d.runtime.model_version for d in devices}
        # Every result at central exactly once, under the version that classified it.
        lost = wrong = 0
        with central.db.sessionmaker() as session:
            for d in devices:
                d.sync.sync_once(d.runtime.outbox)
                stored = {
                    int(seq): (ref, mv)
                    for seq, ref, mv in session.execute(
                        select(Result.seq, Result.customer_ref, Result.model_version).where(Result.device_id == d.id)
                    )
                }
                lost += len(set(d.ledger) - set(stored)) + len(set(stored) - set(d.ledger))
                wrong += sum(stored.get(seq) != entry for seq, entry in d.ledger.items())
            numbers["results"] = sum(len(d.ledger) for d in devices)
            numbers["lost"], numbers["misattributed"] = lost, wrong
            found = rollouts.list_rollouts(session)
            numbers["timeline"] = timeline_lines(list(reversed(found)))
        say(f"results: {numbers['results']} classified, {lost} lost or extra at central, {wrong} under a wrong version")
        say("running now: " + ", ".join(f"{s} {v}" for s, v in numbers["running"].items()))
        say("timeline:")
        for line in numbers["timeline"]:
            say("  " + line)
        if screenshot is not None:
            numbers["screenshot"] = str(screenshot) if screenshot_timeline(central.url, screenshot) else None
    finally:
        for d in devices:
            d.close()
        central.stop()
    return numbers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database-url", default=None, help="central's database (default: SQLite in --workdir)")
    parser.add_argument("--workdir", type=Path, default=None, help="models, devices and keys (default: a temp dir)")
    parser.add_argument("--time-budget-s", type=float, default=120.0, help="cap on each build's search time")
    parser.add_argument("--trials", type=int, default=TRIALS, help="trials per build's search")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="edgeseg-retrain-demo-"))
    os.environ.setdefault("EDGESEG_KEY_DIR", str(workdir / "keys"))
    from factory.signing import load_or_create_key

    load_or_create_key(None)
    public_key = Path(os.environ["EDGESEG_KEY_DIR"]) / "signing_key.pub.pem"
    models = build_models(workdir / "models", time_budget_s=args.time_budget_s, max_trials=args.trials)
    url = args.database_url or f"sqlite:///{workdir / 'central.db'}"
    run_fleet(models, url, workdir / "fleet", public_key, screenshot=workdir / "rollout_timeline.png")
    print(f"(work folder: {workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
