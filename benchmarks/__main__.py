"""``python -m benchmarks [--full | --smoke] [--datasets retail,segmentation,bank] [--out DIR]``.

Quick mode (the default, ``make bench``) takes a few minutes on a 2-core machine; ``--full``
(``make bench FULL=1``) runs longer searches and more repetitions; ``--smoke`` is the smallest
end-to-end run, used by the test.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "reports"


def _parser() -> argparse.ArgumentParser:
    from benchmarks._datasets import DATASETS

    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="longer searches, more rounds (make bench FULL=1)")
    mode.add_argument("--smoke", action="store_true", help="smallest end-to-end run: one dataset, ~3 s searches")
    parser.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help=f"comma-separated, from {', '.join(DATASETS)} (default: all; absent data is skipped with a note)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="reports folder (default: benchmarks/reports)")
    parser.add_argument("--time-budget-s", type=float, default=None, help="override the search time of the mode")
    parser.add_argument("--seed", type=int, default=None, help="override the seed (default 0)")
    parser.add_argument(
        "--render", type=Path, metavar="DIR", help="only re-render DIR's report files from its results.json"
    )
    return parser


def _render(folder: Path) -> int:
    """Rewrite report.md/html, headline.md and the plots from an existing results.json."""
    import json

    from benchmarks._report import write_report

    source = folder / "results.json"
    if not source.is_file():
        print(f"error: {source} does not exist", file=sys.stderr)
        return 2
    write_report(json.loads(source.read_text(encoding="utf-8")), folder)
    print(folder)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render is not None:
        return _render(args.render)
    from benchmarks._config import config_for
    from benchmarks._run import run_bench

    mode = "full" if args.full else "smoke" if args.smoke else "quick"
    cfg = config_for(mode, time_budget_s=args.time_budget_s, seed=args.seed)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]

    # The edge runtime logs the first out-of-range value per field; held-out rows have some.
    # It counts them in its stats either way, and the log lines would bury the progress lines.
    logging.getLogger("edge_runtime").setLevel(logging.ERROR)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        folder = run_bench(
            cfg, datasets=datasets, out_root=args.out, argv=sys.argv[1:] if argv is None else argv, log=log
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
