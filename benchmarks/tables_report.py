"""The README's table of issue-13 runs, from the JSON lines ``benchmarks.tables --json`` appends.

    .venv/bin/python -m benchmarks.tables_report results.jsonl

One row per table: the held-out metric of each seed's build beside the unconstrained LightGBM
reference trained and scored on the same split, the gap per seed and its median (one split of a
2k-row table moves a test AUC by about 0.02, so a single seed says little), both models'
5-fold CV on the training rows where the run recorded it, what was exported, and the p99 the
search measured beside the artifact's re-measure.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["summarize"]


def _runs_by_table(path: Path) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            runs[row["table"]].append(row)
    return runs


def _cv_pair(run: dict[str, Any]) -> str:
    """The exported configuration's and the LightGBM reference's mean over the same CV folds."""
    ours, theirs = run.get("cv_quality"), (run.get("references_cv") or {}).get("lightgbm_300")
    return "—" if ours is None or theirs is None else f"{ours:.3f} / {theirs:.3f}"


def summarize(path: Path) -> str:
    """A markdown table: one row per table, seeds in the order they were run."""
    header = (
        "| table | rows | held-out metric | seeds | edgeseg per seed | LightGBM-300 per seed | gap per seed "
        "| median gap | CV on the training rows, edgeseg / LightGBM-300 | exported | chosen by "
        "| p99 search → artifact (µs) |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for table, runs in _runs_by_table(path).items():
        runs.sort(key=lambda r: r.get("seed", 0))
        gaps = [r["held_out"] - r["references"]["lightgbm_300"] for r in runs]
        chosen = {(r.get("selection") or {}).get("method", "holdout") for r in runs}
        held = " / ".join(f"{r['held_out']:.3f}" for r in runs)
        reference = " / ".join(f"{r['references']['lightgbm_300']:.3f}" for r in runs)
        cv = ", ".join(_cv_pair(r) for r in runs)
        timing = ", ".join(f"{r['search_p99_us']:.0f} → {r['p99_us']:.0f}" for r in runs)
        cells = [
            table, f"{runs[0]['rows']:,}", runs[0]["held_out_metric"], ", ".join(str(r.get("seed", 0)) for r in runs),
            held, reference, " / ".join(f"{g:+.3f}" for g in gaps), f"**{statistics.median(gaps):+.3f}**", cv,
            ", ".join(r["learner"] for r in runs), ", ".join(sorted(chosen)), timing,
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m benchmarks.tables_report RESULTS.jsonl", file=sys.stderr)
        return 2
    print(summarize(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
