"""Process cold start: a fresh interpreter goes from nothing to its first result.

A till restarts, a serverless function scales from zero: the first result's wall time and the
process's peak memory decide whether a stack fits. Each path runs in its own fresh subprocess
(several runs, interleaved, medians): the edge runtime does import → verify signature and hash →
load → golden self-test → first result; the pandas stacks do import → unpickle → first
predict (a pickle has no signature to verify — that check simply does not exist there).
Peak RSS is the child's own high-water mark (``VmHWM``).
"""

from __future__ import annotations

import json
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._contenders import Contenders
from benchmarks._rss import PEAK_RSS_SOURCE

__all__ = ["COLD_PATHS", "measure_cold_start", "write_pickles"]

REPO = Path(__file__).resolve().parents[1]

_PRELUDE = (
    """
import json, sys, time
t0 = time.perf_counter()
"""
    + PEAK_RSS_SOURCE
)

_EPILOGUE = """
t_first = time.perf_counter()
print(json.dumps({
    "import_ms": (t_import - t0) * 1e3,
    "load_ms": (t_load - t_import) * 1e3,
    "first_result_ms": (t_first - t0) * 1e3,
    "peak_rss_mb": peak_rss_mb(),
    "result": str(result)[:80],
}))
"""

_EDGE = (
    _PRELUDE
    + """
from edge_runtime import Classifier
t_import = time.perf_counter()
clf = Classifier.load(sys.argv[1], sys.argv[2], contract="lenient")  # golden rows may hold gaps
t_load = time.perf_counter()
record = json.loads(sys.argv[3])
result = clf.classify(record).segment
"""
    + _EPILOGUE
)

_PANDAS_STACK = (
    _PRELUDE
    + """
import math, pickle
import numpy as np
import pandas as pd
t_import = time.perf_counter()
with open(sys.argv[1], "rb") as handle:
    model = pickle.load(handle)
t_load = time.perf_counter()
record, columns, num = json.loads(sys.argv[3]), json.loads(sys.argv[4]), set(json.loads(sys.argv[5]))
frame = pd.DataFrame({c: ([math.nan if record.get(c) is None else float(record[c])] if c in num
                          else np.array([math.nan if record.get(c) is None else record[c]], dtype=object))
                      for c in columns})
result = getattr(model, sys.argv[2])(frame)
"""
    + _EPILOGUE
)

_EMPTY = _PRELUDE + "t_import = t_load = time.perf_counter()\nresult = None\n" + _EPILOGUE

# key -> (label, what happens)
COLD_PATHS: dict[str, tuple[str, str]] = {
    "edgeseg": ("edgeseg edge runtime", "import edge_runtime → verify → load → self-test → classify"),
    "sklearn_pickle": ("sklearn pipeline (pickle)", "import pandas → unpickle Pipeline → predict_proba(1-row frame)"),
    "flaml_pickle": ("FLAML AutoML (pickle)", "import pandas → unpickle AutoML → predict(1-row frame)"),
    "empty_interpreter": ("bare Python interpreter", "python -c with nothing imported (the floor)"),
}


def write_pickles(c: Contenders, folder: Path) -> dict[str, Path]:
    """The pickles a pandas-stack user would deploy (the model, the pipeline, the AutoML).

    The user's pipeline is ColumnTransformer → model: the factory's float32 cast step refers to
    a factory function, which a user's own pipeline would not import.
    """
    from sklearn.pipeline import Pipeline

    native = c.job.result.native_pipeline
    folder.mkdir(parents=True, exist_ok=True)
    objects = {
        "model": native.named_steps["model"],
        "pipeline": Pipeline([("columns", native.named_steps["columns"]), ("model", native.named_steps["model"])]),
        "automl": c.flaml.automl,
        "booster": c.booster.model,
    }
    paths = {}
    for name, obj in objects.items():
        path = folder / f"{name}.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        paths[name] = path
    return paths


def _run_child(argv: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", *argv], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    wall_ms = (time.perf_counter() - started) * 1e3
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:300]}"}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "process_wall_ms": wall_ms}


def measure_cold_start(c: Contenders, pickles: dict[str, Path], runs: int) -> dict[str, Any]:
    """Interleaved fresh-process runs of every path; medians of each measure."""
    job = c.job
    record = json.dumps(job.records[0])
    columns, num = json.dumps(job.columns), json.dumps(job.num)
    argv = {
        "edgeseg": [_EDGE, str(job.artifact_dir), str(job.public_key), record],
        "sklearn_pickle": [_PANDAS_STACK, str(pickles["pipeline"]), "predict_proba", record, columns, num],
        "flaml_pickle": [_PANDAS_STACK, str(pickles["automl"]), "predict", record, columns, num],
        "empty_interpreter": [_EMPTY],
    }
    samples: dict[str, list[dict[str, Any]]] = {k: [] for k in argv}
    for _ in range(runs):
        for key, args in argv.items():
            samples[key].append(_run_child(args))
    out: dict[str, Any] = {}
    for key, runs_ in samples.items():
        good = [r for r in runs_ if "error" not in r]
        if not good:
            out[key] = {"error": runs_[0]["error"], "runs": 0}
            continue
        out[key] = {
            m: statistics.median(r[m] for r in good)
            for m in ("import_ms", "load_ms", "first_result_ms", "process_wall_ms", "peak_rss_mb")
        }
        out[key]["runs"] = len(good)
        out[key]["first_result"] = good[0].get("result")
    return out
