"""Budgeted builds through the factory's public ``build()``, keeping every trial even on failure.

The progress hook sees every trial as the search logs it, so when no model fits the budget
(``BudgetError``) or passes the parity gate (``ParityError``) the report still shows what the
search tried.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from benchmarks._config import BenchConfig
from benchmarks._datasets import LoadedDataset
from edge_runtime.artifact import Budgets, Manifest, Metrics, Search, read_manifest

if TYPE_CHECKING:
    from factory import BuildConfig, BuildResult, Trial

__all__ = ["BuildRun", "FactorySections", "build_config", "factory_sections", "run_build"]


class FactorySections(NamedTuple):
    """The manifest sections the factory always writes and the report reads."""

    metrics: Metrics
    search: Search
    budgets: Budgets


def factory_sections(manifest: Manifest) -> FactorySections:
    """``manifest``'s metrics, search and budgets; ValueError naming the model when one is absent
    (the contract makes them optional, for artifacts not built by the factory)."""
    metrics, search, budgets = manifest.metrics, manifest.search, manifest.budgets
    if metrics is None or search is None or budgets is None:
        missing = [n for n, v in (("metrics", metrics), ("search", search), ("budgets", budgets)) if v is None]
        raise ValueError(f"the manifest of {manifest.model_version} has no {', '.join(missing)}: not a factory build")
    return FactorySections(metrics, search, budgets)


@dataclass
class BuildRun:
    latency_budget_us: float
    result: BuildResult | None  # None when no model met the budgets or passed the parity gate
    trials: list[Trial] = field(default_factory=list)  # every trial, as the search reported them
    seconds: float = 0.0
    error: str | None = None

    @property
    def manifest(self) -> Manifest | None:
        """The written artifact's manifest, as the edge reads it (None without a model)."""
        return None if self.result is None else read_manifest(self.result.artifact_dir)


def build_config(dataset: LoadedDataset, cfg: BenchConfig, *, out_dir: Path, key_dir: Path) -> BuildConfig:
    """The factory options of every build of ``dataset`` in this run (checked by the factory now,
    before any search): the run's size budget, search time and seed, the dataset's columns."""
    from factory import BuildConfig

    return BuildConfig(
        target=dataset.target,
        drop=dataset.drop,
        id_column=dataset.id_column,
        out_dir=out_dir,
        key_dir=key_dir,
        size_budget_kb=cfg.size_budget_kb,
        time_budget_s=cfg.time_budget_s,
        seed=cfg.seed,
        **dataset.build_extra,
    )


def run_build(dataset: LoadedDataset, config: BuildConfig, *, latency_budget_us: float) -> BuildRun:
    """One factory build of ``config`` at ``latency_budget_us``.

    A refusal (no model within budget, or none passing the parity gate) becomes ``result=None``
    with the message kept: a refused build is a result, not a crash.
    """
    from factory import BudgetError, ParityError, build

    trials: list[Trial] = []

    def progress(trial: Trial, best: Trial | None, elapsed: float) -> None:
        trials.append(trial)

    config = config.replace(latency_budget_us=latency_budget_us, name=f"bench-{dataset.name}-{latency_budget_us:g}us")
    started = time.perf_counter()
    try:
        result = build(dataset.table, config, progress=progress)
    except (BudgetError, ParityError) as exc:
        return BuildRun(latency_budget_us, None, trials, time.perf_counter() - started, str(exc))
    return BuildRun(latency_budget_us, result, list(result.search.trials), time.perf_counter() - started)
