"""One dataset's shared state: the budgeted build, the same split, records and batches.

Every contender is judged on the same held-out rows of the same split the factory used, so a
quality or a latency difference is the deployment path's, not the data's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._datasets import LoadedDataset

__all__ = ["Job", "batch_frame", "frame_from_record", "prepare_job", "to_records"]


@dataclass
class Job:
    """A dataset after its budgeted build, with the factory's own split reproduced."""

    dataset: LoadedDataset
    result: Any  # factory.BuildResult
    trials: list[Any]  # every factory Trial, as the search reported them
    build_seconds: float
    public_key: Path
    num: list[str]
    cat: list[str]
    columns: list[str]  # feature columns in table order (what the pandas stacks were fitted on)
    frame: pd.DataFrame  # normalised features, as the native pipeline reads them
    labels: np.ndarray  # class names per row
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    records: list[dict[str, Any]] = field(default_factory=list)  # held-out rows as dicts (None = missing)

    @property
    def artifact_dir(self) -> Path:
        return Path(self.result.artifact_dir)

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(self.result.manifest)

    @property
    def metric(self) -> str:
        return str(self.manifest["metrics"]["metric"])

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


def prepare_job(
    dataset: LoadedDataset,
    result: Any,
    trials: list[Any],
    build_seconds: float,
    public_key: Path,
    seed: int,
    n_records: int,
) -> Job:
    """Reproduce the factory's split and normalised frame for this build."""
    # The factory's own helpers, so the split is exactly the one the search and the test
    # metrics used (private names, same repository: if they change, the benchmark follows).
    from factory._build import _split
    from factory._data import check_target
    from factory._schema import infer_schema, normalise_frame

    raw = dataset.table
    labels = check_target(raw, dataset.target)
    features = raw[dataset.feature_columns]
    schema = infer_schema(features)
    frame = normalise_frame(features, schema)
    classes = sorted(labels.unique().tolist())
    y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    train_idx, val_idx, test_idx = _split(frame, y, seed)
    layout = result.manifest["input_layout"]
    if list(layout["num"]) != schema.num or list(layout["cat"]) != schema.cat:
        raise RuntimeError("the benchmark's schema disagrees with the artifact's input_layout")
    job = Job(
        dataset=dataset,
        result=result,
        trials=trials,
        build_seconds=build_seconds,
        public_key=public_key,
        num=list(schema.num),
        cat=list(schema.cat),
        columns=list(frame.columns),
        frame=frame,
        labels=labels.to_numpy(dtype=object),
        train_idx=train_idx,
        val_idx=val_idx,
        test_idx=test_idx,
    )
    held_out = frame.iloc[test_idx[:n_records]]
    job.records = to_records(held_out, job.columns)
    return job
