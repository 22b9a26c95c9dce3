"""Measure what a till experiences: single-row latency of the whole graph in onnxruntime.

One thread, no spinning (a POS terminal runs one request at a time and must not burn a core
waiting), one pre-encoded row fed repeatedly. Times are scaled by the target device's profile
(``edge-runtime calibrate`` writes it) so a model can be budgeted for a slower terminal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from factory._settings import ARTIFACT_LATENCY_ROUNDS, ARTIFACT_LATENCY_RUNS, LATENCY_RUNS, LATENCY_WARMUP_RUNS
from factory.errors import FactoryInputError

__all__ = [
    "DeviceProfile",
    "LatencyMeasurer",
    "LatencyReport",
    "measure_artifact",
    "measure_candidate",
    "measure_latency",
]


@dataclass(frozen=True)
class DeviceProfile:
    """How much slower (scale > 1) or faster the target device runs our graphs than this one."""

    scale: float = 1.0
    source: str | None = None
    data: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: str | Path) -> DeviceProfile:
        file = Path(path)
        try:
            data = json.loads(file.read_text())
        except FileNotFoundError as exc:
            raise FactoryInputError(f"device profile {str(file)!r} does not exist") from exc
        except ValueError as exc:
            raise FactoryInputError(f"device profile {str(file)!r} is not JSON: {exc}") from exc
        scale = data.get("scale") if isinstance(data, dict) else None
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
            raise FactoryInputError(f"device profile {str(file)!r}: 'scale' must be a number > 0, got {scale!r}")
        return cls(scale=float(scale), source=str(file), data=data)

    def to_dict(self) -> dict[str, Any] | None:
        if self.source is None:
            return None
        return {"source": Path(self.source).name, "scale": self.scale, "profile": self.data}


@dataclass(frozen=True)
class LatencyReport:
    """Single-row latency percentiles in microseconds, already scaled to the target device."""

    p50_us: float
    p99_us: float
    runs: int
    scale: float


CANDIDATE_LATENCY_ROUNDS = 3  # rounds of LATENCY_RUNS per searched candidate

# What the search and the verify stage call to time a graph; a test passes its own to prove the
# budget logic with fixed numbers (a measured time in a test depends on the machine's load).
LatencyMeasurer = Callable[[ort.InferenceSession, dict[str, np.ndarray], DeviceProfile], LatencyReport]


def measure_latency(
    session: ort.InferenceSession,
    feeds: dict[str, np.ndarray],
    *,
    runs: int,
    warmup: int,
    profile: DeviceProfile,
) -> LatencyReport:
    """p50/p99 of ``session.run`` on one row, cycling through the rows given in ``feeds``.

    ``session`` should be single-threaded without spinning (``make_session``'s default), as a
    till runs it.
    """
    n_rows = next(iter(feeds.values())).shape[0]
    rows = [{name: array[i : i + 1] for name, array in feeds.items()} for i in range(n_rows)]
    run = session.run
    for i in range(warmup):
        run(None, rows[i % n_rows])
    samples = np.empty(runs, dtype=np.float64)
    clock = time.perf_counter_ns
    for i in range(runs):
        row = rows[i % n_rows]
        start = clock()
        run(None, row)
        samples[i] = clock() - start
    samples /= 1000.0
    return LatencyReport(
        p50_us=float(np.percentile(samples, 50)) * profile.scale,
        p99_us=float(np.percentile(samples, 99)) * profile.scale,
        runs=runs,
        scale=profile.scale,
    )


def measure_candidate(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], profile: DeviceProfile
) -> LatencyReport:
    """As the search times every trial: the artifact's estimator (median round's p50 and p99,
    see :func:`measure_artifact`) over ``CANDIDATE_LATENCY_ROUNDS`` shorter rounds, so the
    search's number predicts the artifact's re-measure instead of one round's burst or calm."""
    return _median_of_rounds(session, feeds, profile, runs=LATENCY_RUNS, rounds=CANDIDATE_LATENCY_ROUNDS)


def _median_of_rounds(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], profile: DeviceProfile, *, runs: int, rounds: int
) -> LatencyReport:
    reports = [
        measure_latency(session, feeds, runs=runs, warmup=LATENCY_WARMUP_RUNS, profile=profile) for _ in range(rounds)
    ]
    return LatencyReport(
        p50_us=float(np.median([r.p50_us for r in reports])),
        p99_us=float(np.median([r.p99_us for r in reports])),
        runs=runs * len(reports),
        scale=profile.scale,
    )


def measure_artifact(
    session: ort.InferenceSession, feeds: dict[str, np.ndarray], profile: DeviceProfile
) -> LatencyReport:
    """Median over ``ARTIFACT_LATENCY_ROUNDS`` independent rounds of the p50 and of the p99.

    The artifact's final check uses this: one round's p99 on a shared machine can be set by a
    single burst from another process (we saw a candidate measure 40 µs in the search and 85 µs
    once re-measured), while the median round's p99 is what a till sees in its typical minute.
    """
    return _median_of_rounds(session, feeds, profile, runs=ARTIFACT_LATENCY_RUNS, rounds=ARTIFACT_LATENCY_ROUNDS)
