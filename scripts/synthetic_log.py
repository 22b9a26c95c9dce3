"""Write a synthetic transaction log with the bundled Online Retail log's statistics.

    .venv/bin/python scripts/synthetic_log.py --lines 50000000 --out /tmp/log-50m.parquet --seed 0

Customers, basket sizes, products, prices, countries, returns and seasonality follow the real
log (``factory.features._synthetic`` says how); the file is written in chunks of
``--chunk-lines`` rows, so any size fits in memory. Prints what was written as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing

from factory.features._synthetic import write_synthetic_log  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, required=True, help="log lines to write")
    parser.add_argument("--out", type=Path, required=True, help="Parquet file to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--chunk-lines", type=int, default=1_000_000, help="rows per chunk / row group")
    parser.add_argument("--source", type=Path, default=None, help="real log to imitate (default: bundled)")
    args = parser.parse_args()
    written = write_synthetic_log(
        args.out, args.lines, seed=args.seed, chunk_lines=args.chunk_lines, source=args.source
    )
    print(json.dumps(written.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
