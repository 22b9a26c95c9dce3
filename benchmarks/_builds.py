"""Budgeted builds through the factory's public ``build()``, keeping every trial even on failure.

The progress hook sees every trial as the search logs it, so when no model fits the budget
(``BudgetError``) or passes the parity gate (``ParityError``) the report still shows what the
search tried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._config import BenchConfig
from benchmarks._datasets import LoadedDataset

__all__ = ["BuildRun", "run_build"]


@dataclass
class BuildRun:
    latency_budget_us: float
    result: Any | None  # factory.BuildResult, or None when no model met the budgets
    trials: list[Any] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


def run_build(
    dataset: LoadedDataset, cfg: BenchConfig, *, latency_budget_us: float, out_dir: Path, key_dir: Path
) -> BuildRun:
    """One factory build at ``latency_budget_us`` with the run's size budget, search time and seed.

    A refusal (no model within budget, or none passing the parity gate)
    becomes ``result=None`` with the message kept: a refused build is a result, not a crash."""
    from factory import BudgetError, ParityError, build

    trials: list[Any] = []

    def progress(trial: Any, best: Any, elapsed: float) -> None:
        trials.append(trial)

    started = time.perf_counter()
    try:
        result = build(
            dataset.table,
            target=dataset.target,
            drop=dataset.drop,
            id_column=dataset.id_column,
            name=f"bench-{dataset.name}-{latency_budget_us:g}us",
            out_dir=out_dir,
            latency_budget_us=latency_budget_us,
            size_budget_kb=cfg.size_budget_kb,
            time_budget_s=cfg.time_budget_s,
            seed=cfg.seed,
            key_dir=key_dir,
            progress=progress,
            **dataset.build_extra,
        )
    except (BudgetError, ParityError) as exc:
        return BuildRun(latency_budget_us, None, trials, time.perf_counter() - started, str(exc))
    return BuildRun(latency_budget_us, result, list(result.search.trials), time.perf_counter() - started)
