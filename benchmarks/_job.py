"""One dataset's shared state: the budgeted build, the same split, records and batches.

Every contender is judged on the same held-out rows of the same split the factory used, so a
quality or a latency difference is the deployment path's, not the data's. The split, the
normalised frame and the labels come from the factory's ``BuildResult`` (public API), never
re-derived here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from benchmarks._builds import BuildRun, FactorySections, factory_sections
from benchmarks._datasets import LoadedDataset
from edge_runtime.artifact import Manifest, read_manifest

if TYPE_CHECKING:
    from factory import BuildResult, Trial

__all__ = ["Job", "batch_frame", "frame_from_record", "prepare_job", "to_records"]


@dataclass
class Job:
    """A dataset after its budgeted build: the artifact's manifest and the factory's own split."""

    dataset: LoadedDataset
    result: BuildResult
    manifest: Manifest  # the written artifact's, as the edge reads it
    trials: list[Trial]  # every trial, as the search reported them
    build_seconds: float
    public_key: Path
    records: list[dict[str, Any]] = field(default_factory=list)  # held-out rows as dicts (None = missing)

    @property
    def artifact_dir(self) -> Path:
        return Path(self.result.artifact_dir)

    @property
    def num(self) -> list[str]:
        return list(self.result.schema.num)

    @property
    def cat(self) -> list[str]:
        return list(self.result.schema.cat)

    @property
    def columns(self) -> list[str]:
        """Feature columns in table order (what the pandas stacks are fitted on)."""
        return list(self.result.frame.columns)

    @property
    def frame(self) -> pd.DataFrame:
        """Normalised features of every row, as the native pipeline reads them."""
        return self.result.frame

    @property
    def labels(self) -> np.ndarray:
        """Class name of every row."""
        return self.result.labels

    @property
    def classes(self) -> list[str]:
        """Class names in the order of the graph's probability columns."""
        return [str(c) for c in self.manifest.classes]

    @property
    def train_idx(self) -> np.ndarray:
        return self.result.split.train

    @property
    def val_idx(self) -> np.ndarray:
        return self.result.split.validation

    @property
    def test_idx(self) -> np.ndarray:
        return self.result.split.test

    @property
    def sections(self) -> FactorySections:
        """The manifest's metrics, search and budgets (every factory build writes them)."""
        return factory_sections(self.manifest)

    @property
    def metric(self) -> str:
        return self.sections.metrics.metric

    @property
    def fit_idx(self) -> np.ndarray:
        """Train + validation rows: what an unconstrained user run may learn from."""
        return np.sort(np.concatenate([self.train_idx, self.val_idx]))


def _value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
        return float(v)
    return str(v)


def to_records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Rows as the dicts a till would send: raw fields, None for missing."""
    return [{c: _value(v) for c, v in zip(columns, row, strict=True)} for row in frame[columns].itertuples(index=False)]


def frame_from_record(record: dict[str, Any], columns: list[str], num: set[str]) -> pd.DataFrame:
    """The 1-row DataFrame a pandas-based stack needs for one record (part of its timed path).

    Numbers become float64 (NaN for missing), strings an object column with NaN for missing:
    what sklearn's imputers and FLAML's transformer recognise as missing.
    """
    data: dict[str, Any] = {}
    for c in columns:
        v = record.get(c)
        if c in num:
            data[c] = [math.nan if v is None else float(v)]
        else:
            data[c] = np.array([math.nan if v is None else v], dtype=object)
    return pd.DataFrame(data)


def batch_frame(job: Job, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` held-out rows drawn with replacement (real value distribution, any batch size)."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(job.test_idx, size=rows, replace=True)
    return job.frame.iloc[picks].reset_index(drop=True)


def prepare_job(dataset: LoadedDataset, run: BuildRun, public_key: Path, n_records: int) -> Job:
    """The job of one build: its artifact's manifest and the first held-out rows as records."""
    if run.result is None:
        raise ValueError(f"the p99 <= {run.latency_budget_us:g} µs build of {dataset.name} made no model: {run.error}")
    job = Job(dataset, run.result, read_manifest(run.result.artifact_dir), run.trials, run.seconds, public_key)
    job.records = to_records(job.frame.iloc[job.test_idx[:n_records]], job.columns)
    return job
