"""One simulated device for the end-to-end test: classify N results, syncing as it goes.

Run as a separate process; the test SIGKILLs it at random moments and starts it again with the
same arguments. It resumes from its outbox: results already appended are not appended again,
and whatever was not acknowledged is sent again.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

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
    parser.add_argument("--deadline", type=float, default=90.0)
    args = parser.parse_args()
    rng = random.Random(args.seed + int(time.time() * 1000))
    outbox = Outbox(args.outbox, device_id=args.device_id)
    client = SyncClient(
        args.url,
        device_id=args.device_id,
        token=args.token,
        batch_size=25,
        max_retries=3,
        backoff_base=0.05,
        backoff_cap=0.5,
        timeout=1.5,
        max_batches=3,
        random_state=rng.randrange(2**32),
    )
    stop_at = time.monotonic() + args.deadline
    while time.monotonic() < stop_at:
        remaining = args.n - outbox.last_seq()
        for _ in range(min(remaining, rng.randint(5, 20))):
            p = [rng.random() + 0.01 for _ in CLASSES]
            total = sum(p)
            probabilities = {c: v / total for c, v in zip(CLASSES, p, strict=True)}
            outbox.append(
                segment=max(probabilities, key=probabilities.__getitem__),
                probabilities=probabilities,
                model_version=args.model_version,
                customer_ref=f"{args.device_id}-{rng.randrange(10**9)}",
            )
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
