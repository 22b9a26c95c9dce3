"""The five deployment paths, each as a single-record call and a batch call on the same data.

Single record means *dict in → result out*: whatever a path needs to turn a record into its
input (a 1-row DataFrame, per-column tensors) is inside the timed call, because a till has a
dict. The one exception is the native booster, timed on a pre-encoded float row as the floor
the model itself sets; its label says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from benchmarks._baselines import Booster, DefaultGraph, FlamlRun
from benchmarks._job import Job, frame_from_record
from benchmarks._timing import SingleCall

if TYPE_CHECKING:
    from edge_runtime import Classifier

__all__ = [
    "CONTENDERS",
    "Contenders",
    "agreement",
    "batch_runners",
    "edge_breakdown",
    "single_calls",
    "thread_settings",
]

# key -> (label, what is timed). Order is the report's order; "edgeseg" is the reference.
CONTENDERS: dict[str, tuple[str, str]] = {
    "edgeseg": ("edgeseg edge runtime", "Classifier.classify(dict): validate → encode → ONNX (1 thread) → Result"),
    "flaml_predict": ("FLAML automl.predict", "1-row DataFrame from the dict → unconstrained FLAML model's predict"),
    "sklearn_pipeline": ("sklearn pipeline", "1-row DataFrame from the dict → native Pipeline.predict_proba"),
    "native_booster": ("native booster", "pre-encoded float32 row → booster predict (1 thread); no record handling"),
    "skl2onnx_default": (
        "skl2onnx default graph",
        "dict → one [1,1] tensor per column → onnxruntime (1 thread), ZipMap output",
    ),
}


def thread_settings(cpu_count: int) -> list[list[str]]:
    """Each path's threads, for the report: the ONNX paths share edge_runtime.session's settings."""
    return [
        ["edgeseg single record", "onnxruntime 1 intra-op thread, no spinning, sequential (make_session)"],
        ["edgeseg batch", f"onnxruntime {cpu_count} intra-op threads, no spinning (its batch session)"],
        ["skl2onnx default graph", "the same two sessions as edgeseg (make_session): only the graph differs"],
        [
            "native booster",
            "single record: 1 thread (LightGBM num_threads=1 / XGBoost nthread=1); batch: library default",
        ],
        ["FLAML / sklearn", "library defaults (LightGBM/XGBoost use all cores unless told otherwise)"],
    ]


@dataclass
class Contenders:
    """Everything the calls close over, built once per dataset."""

    job: Job
    classifier: Classifier
    flaml: FlamlRun
    graph: DefaultGraph
    booster: Booster

    @property
    def numset(self) -> set[str]:
        return set(self.job.num)


def _quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """LightGBM warns about feature names on every matrix predict; the warning is not ours."""

    def wrapped(*args: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args)

    return wrapped


def single_calls(c: Contenders) -> list[SingleCall]:
    """One SingleCall per contender over the job's held-out records."""
    job = c.job
    records = job.records
    n = len(records)
    columns, numset = job.columns, c.numset
    classify = c.classifier.classify
    automl = c.flaml.automl
    pipeline = c.job.result.native_pipeline
    graph = c.graph
    preprocess = job.result.native_pipeline[:-1]
    encoded = np.asarray(
        _quiet(preprocess.transform)(pd.concat([frame_from_record(r, columns, numset) for r in records])),
        dtype=np.float32,
    )
    rows = [np.ascontiguousarray(encoded[i : i + 1]) for i in range(n)]
    booster = c.booster
    run_default = graph.single.run

    def flaml_call(i: int) -> Any:
        return automl.predict(frame_from_record(records[i], columns, numset))

    def sklearn_call(i: int) -> Any:
        return pipeline.predict_proba(frame_from_record(records[i], columns, numset))

    return [
        SingleCall("edgeseg", lambda i: classify(records[i]), n),
        SingleCall("flaml_predict", _quiet(flaml_call), n),
        SingleCall("sklearn_pipeline", _quiet(sklearn_call), n),
        SingleCall("native_booster", lambda i: booster.predict_single(rows[i]), n),
        SingleCall("skl2onnx_default", lambda i: run_default(None, graph.feeds_from_record(records[i])), n),
    ]


def _edge_columns(frame: pd.DataFrame, job: Job) -> dict[str, np.ndarray]:
    """A dict of numpy columns, the edge runtime's batch input, as a pandas user has them.

    Numbers go in as float64 arrays with NaN for missing and strings as numpy str arrays with ''
    for missing: both are the runtime's vectorised paths (no per-row Python).
    """
    columns: dict[str, np.ndarray] = {}
    for c in job.num:
        columns[c] = frame[c].to_numpy(dtype=np.float64)
    for c in job.cat:
        # A numpy str column is the runtime's vectorised path; '' is its missing string.
        columns[c] = frame[c].astype(object).where(frame[c].notna(), "").to_numpy(dtype=str)
    return columns


def batch_runners(c: Contenders, frame: pd.DataFrame) -> dict[str, Callable[[], Any]]:
    """Whole-batch calls on ``frame``, inputs already in each path's own batch form."""
    job = c.job
    edge_columns = _edge_columns(frame, job)
    matrix = np.asarray(_quiet(job.result.native_pipeline[:-1].transform)(frame), dtype=np.float32)
    feeds = c.graph.feeds_from_frame(frame)
    classify_many = c.classifier.classify_many
    automl, pipeline, booster, session = c.flaml.automl, job.result.native_pipeline, c.booster, c.graph.batch
    return {
        "edgeseg": lambda: classify_many(edge_columns),
        "flaml_predict": _quiet(lambda: automl.predict(frame)),
        "sklearn_pipeline": _quiet(lambda: pipeline.predict_proba(frame)),
        "native_booster": lambda: booster.predict_batch(matrix),
        "skl2onnx_default": lambda: session.run(None, feeds),
    }


def edge_breakdown(c: Contenders, frame: pd.DataFrame, rounds: int) -> dict[str, Any]:
    """Where edgeseg's batch time goes: validation + encoding vs the onnxruntime run."""
    import statistics
    import time

    columns = _edge_columns(frame, c.job)
    clf = c.classifier
    feeds, n = clf.encode(columns)
    clf.run_feeds(feeds, n)
    encode_s, run_s = [], []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        start = clock()
        feeds, n = clf.encode(columns)
        middle = clock()
        clf.run_feeds(feeds, n)
        encode_s.append((middle - start) / 1e9)
        run_s.append((clock() - middle) / 1e9)
    missing = [name for name, values in columns.items() if values.dtype == object]
    return {
        "validate_encode_s": statistics.median(encode_s),
        "onnxruntime_s": statistics.median(run_s),
        "object_columns": missing,
    }


def agreement(c: Contenders) -> dict[str, Any]:
    """Do the paths compute what they claim? Label agreement with edgeseg on the records.

    The sklearn pipeline, the default graph and (when it is the chosen model) the booster run
    the same model as edgeseg and must agree; FLAML runs its own model, so its figure is only
    how often an unconstrained model lands on the same segment.
    """
    job = c.job
    classes = job.classes
    records = job.records
    frame = pd.concat([frame_from_record(r, job.columns, c.numset) for r in records], ignore_index=True)
    edge = np.array([c.classifier.classify(r).segment for r in records], dtype=object)
    edge_batch = np.asarray(c.classifier.classify_many(_edge_columns(frame, job)).segments, dtype=object)
    sk = np.array(classes, dtype=object)[_quiet(job.result.native_pipeline.predict_proba)(frame).argmax(axis=1)]
    default_labels = np.array(
        [c.graph.single.run(None, c.graph.feeds_from_record(r))[0][0] for r in records], dtype=object
    )
    default_labels = np.array([classes[int(v)] for v in default_labels], dtype=object)
    flaml_labels = np.asarray(_quiet(c.flaml.automl.predict)(frame)).astype(str)
    matrix = np.asarray(_quiet(job.result.native_pipeline[:-1].transform)(frame), dtype=np.float32)
    raw = np.asarray(c.booster.predict_batch(matrix))
    booster_idx = raw.argmax(axis=1) if raw.ndim == 2 else (raw > 0.5).astype(int)
    booster_labels = np.array(classes, dtype=object)[booster_idx]
    chosen = "chosen" in c.booster.source
    return {
        "records": len(records),
        "edgeseg_batch_vs_single": float(np.mean(edge_batch == edge)),
        "sklearn_pipeline": float(np.mean(sk == edge)),
        "skl2onnx_default": float(np.mean(default_labels == edge)),
        "native_booster": float(np.mean(booster_labels == edge)) if chosen else None,
        "flaml_predict_same_segment": float(np.mean(flaml_labels == edge.astype(str))),
    }
