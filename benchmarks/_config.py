"""How hard each mode works: smoke (the test), quick (``make bench``) and full (``FULL=1``).

All knobs live here so a report can print exactly what it ran with, and so the modes differ
only in repetitions and search time, never in what is measured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["BenchConfig", "MODES", "config_for"]


@dataclass(frozen=True)
class BenchConfig:
    """Every repetition count and budget of one benchmark run."""

    mode: str
    time_budget_s: float  # per search: the budgeted build, each budget-table build and unconstrained FLAML
    latency_budget_us: float = 50.0  # the main build's p99 budget (the factory default)
    size_budget_kb: float = 256.0
    budget_table_us: tuple[float, ...] = (10.0, 25.0, 50.0, 100.0)
    rounds: int = 5  # interleaved rounds per single-record contender; the report shows medians
    round_target_s: float = 0.4  # time spent per contender per round (sets calls per round)
    min_calls: int = 200
    max_calls: int = 5000
    warmup_calls: int = 50
    n_records: int = 256  # distinct held-out records cycled through
    batch_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    batch_rounds: int = 3
    cold_runs: int = 3
    seed: int = 0
    max_datasets: int | None = None  # smoke runs one dataset
    # The owners' scripts take their own --smoke/--quick/--full presets when they offer them.
    central_script_args: tuple[str, ...] = ()
    external_timeout_s: float = 600.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# One line per family of knobs (search, single-record rounds, batch and cold start, the owners'
# scripts), so the modes read side by side; everything not named is the quick default above.
MODES: dict[str, BenchConfig] = {
    "smoke": BenchConfig(
        mode="smoke", time_budget_s=3.0, max_datasets=1,
        rounds=2, round_target_s=0.03, min_calls=30, max_calls=300, warmup_calls=10, n_records=32,
        batch_rounds=1, cold_runs=1,
        central_script_args=("--results", "4000"), external_timeout_s=120.0,
    ),
    "quick": BenchConfig(mode="quick", time_budget_s=10.0),
    "full": BenchConfig(
        mode="full", time_budget_s=60.0,
        rounds=11, round_target_s=1.5, min_calls=1000, max_calls=20000, warmup_calls=200, n_records=512,
        batch_rounds=5, cold_runs=7,
        external_timeout_s=1800.0,
    ),
}  # fmt: skip


def config_for(mode: str, **overrides: Any) -> BenchConfig:
    """The mode's configuration with explicit overrides (e.g. ``time_budget_s`` from the CLI)."""
    if mode not in MODES:
        raise ValueError(f"The 'mode' parameter of config_for must be one of {', '.join(MODES)}. Got {mode!r} instead.")
    base = MODES[mode].to_dict()
    base.update({k: v for k, v in overrides.items() if v is not None})
    return BenchConfig(**base)
