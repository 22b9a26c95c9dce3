"""Child of the crash test: classify in a loop, print each returned seq, until killed.

argv: artifact_dir public_key outbox_path
"""

from __future__ import annotations

import sys

from edge_runtime import Runtime

RECORD = {"Age": 38, "Gender": "Female", "Profession": "Engineer", "Var_1": "Cat_4", "ID": "c-1"}


def main() -> None:
    artifact, key, outbox = sys.argv[1:4]
    runtime = Runtime(artifact, outbox_path=outbox, device_id="crash-till", public_key=key,
                      secret="crash-test-secret-0123456789")  # fmt: skip
    out = sys.stdout
    while True:
        seq = runtime.classify(RECORD).seq
        out.write(f"{seq}\n")
        out.flush()


if __name__ == "__main__":
    main()
