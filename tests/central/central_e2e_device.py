"""One device for the end-to-end test: classify N results, syncing as it goes.

With ``--artifact`` it runs the real ``Runtime`` (verified model, drift counts, outbox) on the
artifact's golden records with varying customer ids; without, it appends synthetic results to
the real ``Outbox``.

Run as a separate process; the test SIGKILLs it at random moments and starts it again with the
same arguments. It resumes from its outbox: results already appended are not appended again,
and whatever was not acknowledged is sent again.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from edge_runtime.client import HeadOfficeClient, RetryPolicy
from edge_runtime.exceptions import SyncError
from edge_runtime.outbox import Outbox
from edge_runtime.sync import SyncClient

CLASSES = ("high", "mid", "low")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--device-id", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--model-version", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=100.0)
    parser.add_argument("--artifact", default=None)
    parser.add_argument("--public-key", default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed + int(time.time() * 1000))
    if args.artifact:
        from edge_runtime import Runtime

        runtime = Runtime(
            args.artifact,
            outbox_path=args.outbox,
            device_id=args.device_id,
            secret="e2e-secret-0123456789",
            public_key=args.public_key,
        )
        outbox = runtime.outbox
        manifest = json.loads((Path(args.artifact) / "manifest.json").read_text())
        records = [dict(g["record"]) for g in manifest["golden_samples"]]
        id_field = manifest.get("id_field")

        def classify_one() -> None:
            record = dict(rng.choice(records))
            if id_field:
                record[id_field] = f"{args.device_id}-{rng.randrange(10**9)}"
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
                customer_ref=f"{args.device_id}-{rng.randrange(10**9)}",
            )

    head_office = HeadOfficeClient(
        args.url,
        device_id=args.device_id,
        token=args.token,
        timeout=1.5,
        retry=RetryPolicy(max_retries=3, backoff_base=0.05, backoff_cap=0.5),
        random_state=rng.randrange(2**32),
        allow_http=True,  # central listens on loopback http in the test
    )
    client = SyncClient(head_office, batch_size=25, max_batches=3)
    stop_at = time.monotonic() + args.deadline
    while time.monotonic() < stop_at:
        remaining = args.n - outbox.last_seq()
        for _ in range(min(remaining, rng.randint(5, 20))):
            classify_one()
        try:
            client.sync_once(outbox)
        except SyncError:
            pass
        if outbox.last_seq() >= args.n and outbox.backlog() == 0:
            print(f"done {args.device_id}", flush=True)
            return 0
        time.sleep(0.1)
    print(f"deadline passed with backlog {outbox.backlog()}", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
