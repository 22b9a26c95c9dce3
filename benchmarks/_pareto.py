"""The search's trade-off: quality against single-row p99 and against size, trial by trial.

The front is the set of trials no other trial beats on both quality and cost; the budget line
shows which part of it a till can afford, and the chosen model is marked. The "quality reached
under budget" table repeats the search at several latency budgets with the same search time.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from benchmarks._builds import BuildRun, factory_sections

if TYPE_CHECKING:
    from factory import Trial

__all__ = ["budget_row", "pareto_indices", "trial_points"]


def trial_points(trials: list[Trial]) -> list[dict[str, Any]]:
    """Every trial that produced a graph: learner, quality, p50/p99 µs, bytes, feasible."""
    points = []
    for t in trials:
        if t.error is not None or not math.isfinite(t.latency_p99_us) or not math.isfinite(t.quality):
            continue
        points.append(
            {
                "index": t.index,
                "learner": t.learner,
                "quality": t.quality,
                "latency_p50_us": t.latency_p50_us,
                "latency_p99_us": t.latency_p99_us,
                "size_bytes": t.size_bytes,
                "feasible": t.feasible,
                "elapsed_s": t.elapsed_s,
            }
        )
    return points


def pareto_indices(points: list[dict[str, Any]], cost: str) -> list[int]:
    """Trial indices on the front of (higher quality, lower ``cost``), sorted by cost."""
    ordered = sorted(points, key=lambda p: (p[cost], -p["quality"]))
    front, best = [], -math.inf
    for p in ordered:
        if p["quality"] > best:
            front.append(p["index"])
            best = p["quality"]
    return front


def budget_row(budget_us: float, run: BuildRun, metric: str) -> dict[str, Any]:
    """One line of the quality-under-budget table from a BuildRun."""
    feasible = sum(1 for t in run.trials if t.feasible)
    row: dict[str, Any] = {
        "latency_budget_us": budget_us,
        "trials": len(run.trials),
        "feasible_trials": feasible,
        "search_seconds": run.seconds,
    }
    manifest = run.manifest
    if manifest is None:
        fastest = min((t.latency_p99_us for t in run.trials if t.error is None), default=math.inf)
        row.update(
            model=False,
            note="no model: " + (run.error or "no trial met the budgets")[:400],
            fastest_trial_p99_us=fastest if math.isfinite(fastest) else None,
        )
        return row
    metrics, search, budgets = factory_sections(manifest)
    row.update(
        model=True,
        learner=search.learner,
        validation_quality=metrics.validation_quality,
        test_quality=metrics.test.get(metric),
        latency_p50_us=budgets.measured.latency_p50_us,
        latency_p99_us=budgets.measured.latency_p99_us,
        size_bytes=budgets.measured.size_bytes,
    )
    return row
