"""FLAML search steered by our own budgets: single-row ONNX latency and artifact size.

FLAML 2.7 cannot enforce these for us: ``metric_constraints`` on keys a custom metric reports
are ignored (AutoML nests them under ``metric_for_logging`` where the searcher never looks) and
AutoML picks its final model on plain loss. So the metric callable below converts every trained
candidate to the full deployable graph, measures it, adds a penalty to the loss of an
over-budget candidate (so the searcher moves away from it), and logs the trial. The exported
model is the best *logged* trial that met every budget — never FLAML's own ``best_estimator``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline

from edge_runtime.session import make_session
from factory._config import Budgets, BuildConfig
from factory._float_graph import device_timing
from factory._latency import DeviceProfile, LatencyMeasurer, measure_candidate
from factory._onnx_export import export_graph
from factory._schema import InputSchema

__all__ = ["Budgets", "Candidate", "ExportContext", "SearchResult", "Trial", "run_search", "score"]

# Added to an over-budget candidate's loss: larger than any accuracy/F1/AUC loss, and growing
# with the overshoot so the searcher is pulled back towards smaller, faster configurations.
OVER_BUDGET_PENALTY = 1.0
# The compact presets are tried first, within this share of the search's time budget; FLAML
# searches for the rest of it (at least half of it, should a preset overrun).
PRESET_TIME_SHARE = 0.25


@dataclass
class Trial:
    """One searched candidate, as written to ``search_log.jsonl``."""

    index: int
    learner: str
    config: dict[str, Any]
    quality: float
    loss: float
    latency_p50_us: float
    latency_p99_us: float
    size_bytes: int
    feasible: bool
    elapsed_s: float
    error: str | None = None
    # The verify stage's re-measure of this trial's artifact (same graph, session options and
    # rows as above; None: not re-measured), so the log shows what the search predicted beside
    # what the artifact measured.
    remeasured_p50_us: float | None = None
    remeasured_p99_us: float | None = None
    # The rerank stage's k-fold cross-validated quality (mean and spread over the folds) on the
    # training and validation rows; None: not re-scored (a large table, or outside the top).
    cv_quality: float | None = None
    cv_std: float | None = None

    @property
    def fixed(self) -> bool:
        """A fixed recipe (one of our baselines or compact presets), not a configuration FLAML chose."""
        return self.learner.startswith("baseline_") or "preset" in self.config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    """A feasible trial kept for export: its native model and its graph."""

    trial: Trial
    model: Any
    graph: onnx.ModelProto


@dataclass
class SearchResult:
    trials: list[Trial] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)  # feasible, best first
    wall_time_s: float = 0.0
    baselines: dict[str, Trial] = field(default_factory=dict)  # our own baselines' trials, by name
    baseline_models: dict[str, Any] = field(default_factory=dict)  # and their fitted models
    selection: dict[str, Any] | None = None  # how ``candidates`` were ordered at the end (factory._rerank)

    def closest(self, n: int = 3) -> list[Trial]:
        """The infeasible trials nearest to the budgets, for the error message."""
        return sorted(
            (t for t in self.trials if t.error is None),
            key=lambda t: (t.latency_p99_us, t.size_bytes, t.loss),
        )[:n]


def score(metric: str, y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> tuple[float, float]:
    """(quality as users read it, loss FLAML minimises) for one of our metric names."""
    labels = list(range(n_classes))
    predicted = proba.argmax(axis=1)
    try:
        if metric == "accuracy":
            quality = float(accuracy_score(y_true, predicted))
            return quality, 1.0 - quality
        if metric == "macro_f1":
            quality = float(f1_score(y_true, predicted, average="macro", labels=labels, zero_division=0))
            return quality, 1.0 - quality
        if metric == "roc_auc":
            if n_classes == 2:
                quality = float(roc_auc_score(y_true, proba[:, 1]))
            else:
                quality = float(roc_auc_score(y_true, proba, multi_class="ovr", labels=labels))
            return quality, 1.0 - quality
        if metric == "log_loss":
            quality = float(log_loss(y_true, np.clip(proba, 1e-15, 1.0), labels=labels))
            return quality, quality
    except ValueError:  # e.g. a class absent from this validation split
        return float("nan"), 1.0
    raise ValueError(f"unknown metric {metric!r}")


ProgressHook = Callable[[Trial, "Trial | None", float], None]


@dataclass(frozen=True)
class ExportContext:
    """What turns a fitted model into the deployable graph and times it on the target device."""

    preprocessor: Pipeline
    schema: InputSchema
    classes: list[str]
    latency_feeds: dict[str, np.ndarray]  # a few real rows, encoded as the edge encodes them
    profile: DeviceProfile

    def graph(self, model: Any) -> onnx.ModelProto:
        return export_graph(self.preprocessor, model, self.schema, self.classes)

    @property
    def widths(self) -> tuple[int, int]:
        """(number inputs, string inputs): the graph's ``num`` and ``cat`` widths."""
        return len(self.schema.num), len(self.schema.cat)


class _BudgetedMetric:
    """FLAML custom metric: quality on validation, plus latency and size of the real graph."""

    def __init__(
        self,
        config: BuildConfig,
        context: ExportContext,
        *,
        keep: int,
        progress: ProgressHook | None,
        measure: LatencyMeasurer,
    ) -> None:
        self.config, self.context, self.keep = config, context, keep
        self.progress, self.measure = progress, measure
        self.budgets = config.budgets
        self.result = SearchResult()
        self.started = time.monotonic()

    def best_feasible(self) -> Trial | None:
        return self.result.candidates[0].trial if self.result.candidates else None

    def __call__(
        self,
        X_val: np.ndarray,
        y_val: np.ndarray,
        estimator: Any,
        labels: Any,
        X_train: np.ndarray,
        y_train: np.ndarray,
        *args: Any,
    ) -> tuple[float, dict[str, Any]]:
        config = dict(estimator.params) if hasattr(estimator, "params") else {}
        trial, penalty = self.evaluate(
            estimator.estimator, _learner_name(type(estimator).__name__), config, X_val, y_val
        )
        return trial.loss + penalty, self.metric_for_logging(trial, estimator.estimator)

    def metric_for_logging(self, trial: Trial, model: Any) -> dict[str, Any]:
        """What FLAML keeps of a trial (the Spark search's metric sends the whole trial back)."""
        measured = {"quality": trial.quality, "p99_us": trial.latency_p99_us, "size_bytes": trial.size_bytes}
        return {**measured, "pred_time": 0.0}

    def evaluate(
        self, model: Any, learner: str, config: dict[str, Any], X_val: np.ndarray, y_val: np.ndarray
    ) -> tuple[Trial, float]:
        """Score, export and time one fitted model; log it as a trial; (trial, loss penalty)."""
        config = {k: v for k, v in config.items() if isinstance(v, (int, float, str, bool)) or v is None}
        with warnings.catch_warnings():
            # FLAML fits LightGBM on a DataFrame view; predicting on the bare matrix is intended.
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            proba = np.asarray(model.predict_proba(X_val))
        quality, loss = score(self.config.metric, np.asarray(y_val), proba, len(self.context.classes))
        graph = None
        error = None
        p50 = p99 = math.inf
        size = 0
        try:
            graph = self.context.graph(model)
            blob = graph.SerializeToString()
            size = len(blob)
            # timed as the device runs it: the float-only graph when it can be derived
            timed, feeds = device_timing(graph, self.context.latency_feeds, *self.context.widths)
            latency = self.measure(make_session(timed), feeds, self.context.profile)
            p50, p99 = latency.p50_us, latency.p99_us
        except Exception as exc:  # a converter gap makes this candidate unusable, not the search
            error = f"{type(exc).__name__}: {exc}"[:300]
        feasible = error is None and p99 <= self.budgets.latency_p99_us and size <= self.budgets.size_bytes
        penalty = 0.0
        if not feasible:
            overshoot = (
                0.0
                if error
                else max(0.0, p99 / self.budgets.latency_p99_us - 1.0) + max(0.0, size / self.budgets.size_bytes - 1.0)
            )
            penalty = OVER_BUDGET_PENALTY + min(overshoot, 10.0)
        trial = Trial(
            index=len(self.result.trials),
            learner=learner,
            config=config,
            quality=quality,
            loss=loss,
            latency_p50_us=p50,
            latency_p99_us=p99,
            size_bytes=size,
            feasible=feasible,
            elapsed_s=time.monotonic() - self.started,
            error=error,
        )
        self.result.trials.append(trial)
        if feasible and graph is not None:
            self.result.candidates.append(Candidate(trial=trial, model=model, graph=graph))
            self.result.candidates.sort(key=lambda c: c.trial.loss)
            # the best `keep`, and every fixed recipe (baseline, preset) however it did on the
            # holdout: the rerank stage re-scores those whatever their holdout rank
            self.result.candidates[self.keep :] = [c for c in self.result.candidates[self.keep :] if c.trial.fixed]
        if self.progress is not None:
            self.progress(trial, self.best_feasible(), trial.elapsed_s)
        return trial, penalty

    def add_baselines(self, train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray]) -> None:
        """Our own baselines as candidates: fitted on the same rows, scored, exported and timed
        exactly as FLAML's trials (docs/DESIGN.md §2, "Baselines are candidates"), so the
        exported model is never worse on validation than the best of them that fits the budgets."""
        from factory.explain import baseline_models

        for name, model in baseline_models(self.config.seed).items():
            trial = self.add_fixed(model, f"baseline_{name}", {"baseline": name}, train, validation)
            self.result.baselines[name] = trial
            self.result.baseline_models[name] = model

    def add_presets(
        self, train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray], *, until: float
    ) -> None:
        """The compact presets (``factory._presets``) as trials, until the monotonic time
        ``until``: a practitioner's first recipe competes with what the search finds, under the
        same budgets."""
        from factory._presets import compact_presets

        presets = compact_presets(self.config.learners, len(self.context.classes), self.config.seed)
        for name, (learner, params, model) in presets.items():
            if time.monotonic() >= until:
                return
            self.add_fixed(model, learner, {"preset": name, **params}, train, validation)

    def add_fixed(
        self,
        model: Any,
        learner: str,
        config: dict[str, Any],
        train: tuple[np.ndarray, np.ndarray],
        validation: tuple[np.ndarray, np.ndarray],
    ) -> Trial:
        """Fit one fixed configuration on the search's training rows and log it as a trial."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            model.fit(*train)
        trial, _ = self.evaluate(model, learner, config, *validation)
        return trial


_LEARNER_NAMES = {
    "LGBMEstimator": "lgbm",
    "XGBoostSklearnEstimator": "xgboost",
    "XGBoostLimitDepthEstimator": "xgb_limitdepth",
    "RandomForestEstimator": "rf",
    "ExtraTreesEstimator": "extra_tree",
    "LRL1Classifier": "lrl1",
    "LRL2Classifier": "lrl2",
}


def _learner_name(class_name: str) -> str:
    return _LEARNER_NAMES.get(class_name, class_name)


def _starting_points(config: BuildConfig) -> dict[str, Any] | None:
    """``config.starting_points`` for the learners this search runs (None: FLAML's own)."""
    given = config.starting_points or {}
    points = {learner: list(given[learner]) for learner in config.learners if given.get(learner)}
    return points or None


def run_search(
    config: BuildConfig,
    context: ExportContext,
    *,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    keep: int = 50,
    progress: ProgressHook | None = None,
    measure: LatencyMeasurer = measure_candidate,
) -> SearchResult:
    """Run FLAML on our preprocessed matrices, then our baselines on the same rows; return every
    trial and the ``keep`` best feasible ones (the verify stage falls back through them in order).
    With ``config.engine == "spark"`` the trials run on Spark (``factory._spark_search``)."""
    if config.engine == "spark":
        from factory._spark_search import run_spark_search

        return run_spark_search(config, context, train, validation, keep, progress, measure)
    from flaml.automl import AutoML

    scorer = _BudgetedMetric(config, context, keep=keep, progress=progress, measure=measure)
    automl = AutoML()  # type: ignore[no-untyped-call]  # flaml has no annotations
    started = time.monotonic()
    # The presets come out of the time budget (at most PRESET_TIME_SHARE of it), FLAML gets the rest.
    scorer.add_presets(train, validation, until=started + PRESET_TIME_SHARE * config.time_budget_s)
    left = max(config.time_budget_s - (time.monotonic() - started), config.time_budget_s / 2)
    automl.fit(**flaml_arguments(config.replace(time_budget_s=left), scorer, train, validation))
    scorer.add_baselines(train, validation)
    scorer.result.wall_time_s = time.monotonic() - started
    return scorer.result


def flaml_arguments(
    config: BuildConfig,
    metric: Any,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """``AutoML.fit``'s arguments for our budgeted search (the Spark search adds its own)."""
    return {
        "X_train": train[0],
        "y_train": train[1],
        "X_val": validation[0],
        "y_val": validation[1],
        "task": "classification",
        "metric": metric,
        "estimator_list": list(config.learners),
        "time_budget": config.time_budget_s,
        "eval_method": "holdout",
        "seed": config.seed,
        "skip_transform": True,
        "retrain_full": False,
        "auto_augment": False,
        "log_file_name": "",
        "verbose": 0,
        "early_stop": False,
        "starting_points": _starting_points(config),
        # a trial count makes the search independent of the machine's load (FLAML's max_iter)
        **({} if config.max_trials is None else {"max_iter": config.max_trials}),
    }
