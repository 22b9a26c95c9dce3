"""The budgeted FLAML search with its trials on Spark (``--engine spark``).

FLAML runs trials concurrently on Spark executors when ``use_spark=True`` (through
``joblibspark``). Each trial trains, and is judged by our metric, *on a worker*: the metric
object is pickled to the workers, which is why it is a class of this importable module
(:class:`SparkBudgetedMetric`), not a closure, and why its state (the trial list) cannot be
collected there. Instead every trial travels back to the driver in FLAML's
``metric_for_logging``, which FLAML writes to its training log (``log_type="all"``); the driver
reads that log and rebuilds the same :class:`factory._search.SearchResult` as the sequential
search: every trial in the search log with its quality, latency and size, the over-budget ones
penalised exactly as in ``factory._search`` (the workers run the same ``evaluate``), and the
feasible models, best first, for the verify stage. A feasible trial's fitted model comes back
pickled inside that log (a private temporary file, deleted after the search) so that the model
exported is the one measured, not a refit.

The measured recipe (FLAML 2.7, pyspark 4.x; issue 17): ``n_jobs=1`` per trial,
``force_cancel=True`` so an overrunning trial is cancelled at the time budget,
``FLAML_MAX_CONCURRENT`` set to the number of concurrent trials (FLAML otherwise counts
executors, and a local master has none besides the driver), ``PYSPARK_PYTHON`` the venv's
python (``factory._spark``), joblib 1.4.2 and optuna <= 3.6.1 (the ``spark`` extra).

On 2 cores this is not faster than the sequential search (README, "Beyond one machine"): it is
the way to spread a search over a cluster's cores.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from factory._config import BuildConfig
from factory._latency import LatencyMeasurer
from factory._search import (
    PRESET_TIME_SHARE,
    Candidate,
    ExportContext,
    ProgressHook,
    SearchResult,
    Trial,
    _BudgetedMetric,
    flaml_arguments,
)
from factory._spark import local_cores, require_pyspark, spark_session

__all__ = ["SparkBudgetedMetric", "concurrent_trials", "run_spark_search", "warm_workers"]

# Key of our trial in FLAML's metric_for_logging, and of a feasible trial's pickled model.
TRIAL_KEY = "edgeseg_trial"
MODEL_KEY = "edgeseg_model"


class SparkBudgetedMetric(_BudgetedMetric):
    """The sequential search's metric, run on a Spark worker: the trial is returned, not kept.

    ``evaluate`` is the sequential search's own (score, export, time, penalise), so a trial
    is judged the same way wherever it runs.
    """

    def metric_for_logging(self, trial: Trial, model: Any) -> dict[str, Any]:
        # Nothing accumulates on a worker: this object is a fresh copy for every task anyway.
        self.result = SearchResult()
        logged: dict[str, Any] = {TRIAL_KEY: trial.to_dict(), "pred_time": 0.0}
        if trial.feasible:
            logged[MODEL_KEY] = base64.b64encode(pickle.dumps(model)).decode("ascii")
        return logged


def _import_trial_modules(_: int) -> int:
    """Run on a worker: import what a trial needs (FLAML, the learners, the ONNX converters)."""
    import flaml.automl  # noqa: F401
    import lightgbm  # noqa: F401
    import onnxmltools  # noqa: F401
    import skl2onnx  # noqa: F401
    import xgboost  # noqa: F401

    import factory._spark_search  # noqa: F401

    return os.getpid()


def warm_workers(session: Any, n: int) -> None:
    """Start ``n`` Python workers and import the trial's modules there before the clock runs.

    Spark reuses its Python workers, so the seconds of imports (sklearn, LightGBM, XGBoost,
    the ONNX converters) are paid here once instead of inside the first trials' time.
    """
    session.sparkContext.parallelize(range(n), n).map(_import_trial_modules).collect()


def concurrent_trials(master: str, session: Any) -> int:
    """Trials at a time: the cores of a local master, else the cluster's default parallelism."""
    if master.startswith("local"):
        return local_cores(master)
    return max(1, int(session.sparkContext.defaultParallelism))


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """FLAML's parallel searcher makes optuna studies, and optuna announces each one at INFO."""
    try:
        import optuna
    except ImportError:
        yield
        return
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def _read_log(path: Path) -> list[dict[str, Any]]:
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            logged = record.get("logged_metric")
            if isinstance(logged, dict) and TRIAL_KEY in logged:
                records.append(record)
    return records


def run_spark_search(
    config: BuildConfig,
    context: ExportContext,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    keep: int,
    progress: ProgressHook | None,
    measure: LatencyMeasurer,
) -> SearchResult:
    """:func:`factory._search.run_search` with FLAML's trials on ``config.spark_master`` (it
    calls this with its own arguments when ``config.engine == "spark"``).

    ``progress`` sees every trial once the search is over (the trials finish on the workers).
    """
    session = spark_session(config.spark_master)
    require_pyspark("The search on Spark", "joblibspark")
    n_trials = concurrent_trials(config.spark_master, session)
    os.environ["FLAML_MAX_CONCURRENT"] = str(n_trials)
    warm_workers(session, n_trials)
    from flaml.automl import AutoML

    worker_metric = SparkBudgetedMetric(config, context, keep=keep, progress=None, measure=measure)
    driver = _BudgetedMetric(config, context, keep=keep, progress=progress, measure=measure)
    automl = AutoML()  # type: ignore[no-untyped-call]  # flaml has no annotations
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgeseg-spark-search-") as folder:
        log_file = Path(folder) / "flaml.log"
        with warnings.catch_warnings(), _quiet_optuna():
            # FLAML warns that the concurrent trials exceed its executor count (we set it), and
            # joblibspark that a local master has no stage-level scheduling: both expected.
            warnings.filterwarnings("ignore", module="flaml")
            warnings.filterwarnings("ignore", message="Spark local mode doesn't support stage-level scheduling")
            warnings.filterwarnings("ignore", message="Spark session is not provided")
            automl.fit(
                **{
                    **flaml_arguments(config, worker_metric, train, validation),
                    "log_file_name": str(log_file),
                    "log_type": "all",
                    "use_spark": True,
                    "n_concurrent_trials": n_trials,
                    "n_jobs": 1,
                    "force_cancel": True,
                }
            )
        records = _read_log(log_file)
    result = driver.result
    # A trial's elapsed_s counts from when the first trial started on a worker: Spark's start-up
    # (Python workers, broadcasting the data) is in wall_time_s, not in the trials' time line, so
    # "the first trial alone overran the budget" (factory._stages) means what it says.
    start_up = float(records[0]["wall_clock_time"]) - float(records[0]["trial_time"]) if records else 0.0
    for index, record in enumerate(records):
        trial = Trial(**record["logged_metric"][TRIAL_KEY])
        trial.index, trial.elapsed_s = index, max(0.0, float(record["wall_clock_time"]) - start_up)
        result.trials.append(trial)
    feasible = sorted((t.loss, t.index) for t in result.trials if MODEL_KEY in records[t.index]["logged_metric"])
    for _, index in feasible[:keep]:
        # Our own pickle, written by our metric into this search's private folder: trusted.
        model = pickle.loads(base64.b64decode(records[index]["logged_metric"][MODEL_KEY]))
        result.candidates.append(Candidate(trial=result.trials[index], model=model, graph=context.graph(model)))
    if progress is not None:
        best: Trial | None = None
        for trial in result.trials:
            if trial.feasible and (best is None or trial.loss < best.loss):
                best = trial
            progress(trial, best, trial.elapsed_s)
    driver.add_baselines(train, validation)
    driver.add_presets(train, validation, until=time.monotonic() + PRESET_TIME_SHARE * config.time_budget_s)
    result.wall_time_s = time.monotonic() - started
    return result
