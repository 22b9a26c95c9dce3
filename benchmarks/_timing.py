"""Timing that survives a shared, noisy machine: interleaved rounds, medians, perf_counter_ns.

Every contender is timed in every round, in a rotated order, so a burst of load from another
process hits all of them alike; a report shows the median over rounds of each round's
percentiles (p50, p99) and p99.9 over the pooled samples of all rounds (one round rarely has
enough calls for a stable p99.9). Nothing here asserts a time: numbers are reported, not judged.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks._config import BenchConfig

__all__ = ["LatencyStats", "SingleCall", "measure_batch", "measure_single", "percentile_us"]


def percentile_us(samples_ns: np.ndarray, q: float) -> float:
    """The q-th percentile (0..100) of nanosecond samples, in microseconds."""
    return float(np.percentile(samples_ns, q)) / 1000.0


@dataclass
class SingleCall:
    """One contender's single-record path: ``call(i)`` handles input number ``i`` end to end."""

    name: str
    call: Callable[[int], Any]
    n_inputs: int


@dataclass
class LatencyStats:
    p50_us: float
    p99_us: float
    p99_9_us: float
    mean_us: float
    rounds: int
    calls_per_round: int
    round_p50_us: list[float]
    round_p99_us: list[float]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _calls_for(contender: SingleCall, target_s: float, low: int, high: int) -> int:
    """Calls per round so each round spends about ``target_s`` on this contender."""
    probe = 10
    clock = time.perf_counter_ns
    start = clock()
    for i in range(probe):
        contender.call(i % contender.n_inputs)
    per_call_s = max((clock() - start) / probe / 1e9, 1e-7)
    return int(min(high, max(low, target_s / per_call_s)))


def _one_round(contender: SingleCall, calls: int, warmup: int) -> np.ndarray:
    call, n = contender.call, contender.n_inputs
    for i in range(warmup):
        call(i % n)
    samples = np.empty(calls, dtype=np.int64)
    clock = time.perf_counter_ns
    # The collector would charge one contender for another's garbage; it is off while timing.
    gc.collect()
    gc.disable()
    try:
        for i in range(calls):
            start = clock()
            call(i % n)
            samples[i] = clock() - start
    finally:
        gc.enable()
    return samples


def measure_single(contenders: Sequence[SingleCall], cfg: BenchConfig) -> dict[str, LatencyStats]:
    """Interleaved rounds of single-call timings for every contender.

    ``cfg`` sets the rounds, the time per contender per round (bounded by its min/max calls) and
    the warm-up calls before each round.
    """
    rounds, warmup = cfg.rounds, cfg.warmup_calls
    calls = {c.name: _calls_for(c, cfg.round_target_s, cfg.min_calls, cfg.max_calls) for c in contenders}
    per_round: dict[str, list[np.ndarray]] = {c.name: [] for c in contenders}
    order = list(contenders)
    for r in range(rounds):
        shift = r % len(order)
        for contender in order[shift:] + order[:shift]:
            per_round[contender.name].append(_one_round(contender, calls[contender.name], warmup))
    out: dict[str, LatencyStats] = {}
    for name, samples in per_round.items():
        pooled = np.concatenate(samples)
        p50s = [percentile_us(s, 50) for s in samples]
        p99s = [percentile_us(s, 99) for s in samples]
        out[name] = LatencyStats(
            p50_us=statistics.median(p50s),
            p99_us=statistics.median(p99s),
            p99_9_us=percentile_us(pooled, 99.9),
            mean_us=float(pooled.mean()) / 1000.0,
            rounds=rounds,
            calls_per_round=calls[name],
            round_p50_us=[round(x, 3) for x in p50s],
            round_p99_us=[round(x, 3) for x in p99s],
        )
    return out


def measure_batch(runs: dict[str, Callable[[], Any]], rows: int, *, rounds: int) -> dict[str, dict[str, Any]]:
    """Rows per second of whole-batch calls, interleaved like the single-record rounds.

    Each contender gets one warm-up call (first-call allocations and lazy sessions are start-up
    costs, reported as cold start), then ``rounds`` timed calls; the median time gives rows/s.
    """
    for run in runs.values():
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    clock = time.perf_counter_ns
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            runs[name]()
            seconds[name].append((clock() - start) / 1e9)
    out: dict[str, dict[str, Any]] = {}
    for name, values in seconds.items():
        median = statistics.median(values)
        out[name] = {
            "rows": rows,
            "rows_per_s": rows / median if median > 0 else float("inf"),
            "median_s": median,
            "rounds": rounds,
            "round_s": [round(v, 6) for v in values],
        }
    return out
