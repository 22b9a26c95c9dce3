"""One device for the fault soak (test_central_e2e_faults.py), run as its own process.

``classify`` (default): classify until this outbox epoch holds N results, syncing as it goes.
With ``--artifact`` it runs the real ``Runtime`` (verified model, drift counts, outbox) on the
artifact's golden records with varying customer ids; without, it appends synthetic results to
the real ``Outbox``. The test SIGKILLs it at random moments, deletes or corrupts its outbox,
and starts it again with the same arguments: it resumes from its outbox (a deleted or
quarantined one starts a new epoch) and sends whatever was not acknowledged. It exits 0 when
the epoch holds N results, nothing is unsynced and every outbox event reached central; it
prints its outbox status as JSON on the last line.

``update``: one ``ModelUpdater.update()`` against central; with ``--kill-at-step K`` the
process SIGKILLs itself at the updater's K-th step (a real kill in the middle of an update).
Exit 0 installed/up to date, 4 refused, 75 central away.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

from edge_runtime.client import HeadOfficeClient, RetryPolicy
from edge_runtime.exceptions import SyncError
from edge_runtime.outbox import Outbox
from edge_runtime.sync import SyncClient

CLASSES = ("high", "mid", "low")


def _head_office(args: argparse.Namespace, seed: int) -> HeadOfficeClient:
    return HeadOfficeClient(
        args.url,
        device_id=args.device_id,
        token=args.token,
        timeout=1.5,
        retry=RetryPolicy(max_retries=3, backoff_base=0.05, backoff_cap=0.5),
        random_state=seed,
        allow_http=True,  # loopback only
    )


def _update(args: argparse.Namespace) -> int:
    from edge_runtime.updates import ModelUpdater

    steps = 0

    def on_step(name: str) -> None:
        nonlocal steps
        steps += 1
        if steps == args.kill_at_step:
            print(f"killing myself after step {steps} ({name})", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    updater = ModelUpdater(
        _head_office(args, args.seed), public_key=args.public_key, models_dir=args.models_dir, on_step=on_step
    )
    try:
        report = updater.update()
    except SyncError as exc:
        print(f"central away: {exc}", flush=True)
        return 75
    print(json.dumps(report.to_dict()), flush=True)
    return 4 if report.status == "refused" else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("classify", "update"), default="classify")
    parser.add_argument("--url", required=True)
    parser.add_argument("--device-id", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--outbox", default=None)
    parser.add_argument("--n", type=int, default=0, help="results per outbox epoch")
    parser.add_argument("--model-version", default="")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=100.0)
    parser.add_argument("--artifact", default=None)
    parser.add_argument("--public-key", default=None)
    parser.add_argument("--models-dir", default=None)
    parser.add_argument("--kill-at-step", type=int, default=0)
    args = parser.parse_args()
    if args.mode == "update":
        return _update(args)
    rng = random.Random(args.seed + int(time.time() * 1000))
    if args.artifact:
        from edge_runtime import Runtime

        runtime = Runtime(
            args.artifact,
            outbox_path=args.outbox,
            device_id=args.device_id,
            secret="e2e-secret-0123456789",
            public_key=args.public_key,
            contract="lenient",  # golden rows have gaps on purpose (one is all missing)
        )
        outbox = runtime.outbox
        manifest = json.loads((Path(args.artifact) / "manifest.json").read_text())
        records = [dict(g["record"]) for g in manifest["golden_samples"]]
        id_field = manifest.get("id_field")

        def classify_one() -> None:
            record = dict(rng.choice(records))
            if id_field:
                # Unique per classification: the soak checks no customer_ref is stored twice.
                record[id_field] = f"{args.device_id}-{rng.randrange(10**15)}"
            runtime.classify(record)
    else:
        outbox = Outbox(args.outbox, device_id=args.device_id)

        def classify_one() -> None:
            p = [rng.random() + 0.01 for _ in CLASSES]
            total = sum(p)
            probabilities = {c: v / total for c, v in zip(CLASSES, p, strict=True)}
            outbox.append(
                segment=max(probabilities, key=probabilities.__getitem__),
                probabilities=probabilities,
                model_version=args.model_version,
                customer_ref=f"{args.device_id}-{rng.randrange(10**15)}",
            )

    client = SyncClient(_head_office(args, rng.randrange(2**32)), batch_size=25, max_batches=3)
    stop_at = time.monotonic() + args.deadline
    while time.monotonic() < stop_at:
        remaining = args.n - outbox.last_seq()
        for _ in range(min(remaining, rng.randint(5, 20))):
            classify_one()
        try:
            client.sync_once(outbox)
        except SyncError:
            pass
        done = outbox.last_seq() >= args.n and outbox.backlog() == 0
        if done and not outbox.events(unreported_only=True):
            print(json.dumps(outbox.status()), flush=True)
            return 0
        time.sleep(0.1)
    print(f"deadline passed: {json.dumps(outbox.status())}", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
