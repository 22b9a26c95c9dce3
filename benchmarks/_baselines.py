"""What a user would otherwise deploy, built from the same data and split as the edgeseg model.

* ``fit_unconstrained_flaml``: FLAML AutoML on the raw table with the same learners, metric,
  time budget and seed, and no latency or size budget — the run our users would otherwise do.
* ``default_onnx_graph``: skl2onnx's default export of ``Pipeline(ColumnTransformer(imputers +
  OrdinalEncoder), same fitted model)`` — one input per column and ZipMap output, as skl2onnx
  and onnxmltools produce without hand work.
* ``native_booster``: the gradient-boosted model's own predict on a pre-encoded float row (the
  floor the model itself sets, without any record handling).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from benchmarks._job import Job

__all__ = ["Booster", "DefaultGraph", "FlamlRun", "default_onnx_graph", "fit_unconstrained_flaml", "native_booster"]

# FLAML's names for our metrics (FLAML minimises 1 - metric for these itself).
_FLAML_METRIC = {"macro_f1": "macro_f1", "accuracy": "accuracy", "roc_auc": "roc_auc_ovr", "log_loss": "log_loss"}


@dataclass
class FlamlRun:
    automl: Any
    columns: list[str]
    learners: list[str]  # the ones it could choose from
    learner: str | None
    config: dict[str, Any]
    test_quality: float
    fit_seconds: float
    train_rows: int


def raw_features(job: Job) -> pd.DataFrame:
    """The raw table's feature columns; integers widened to float64 so a 1-row frame built from
    a record (float64) has the dtypes FLAML was fitted on."""
    frame = job.dataset.table[job.columns].copy()
    for c in job.num:
        frame[c] = frame[c].astype("float64")
    return frame


def fit_unconstrained_flaml(job: Job) -> FlamlRun:
    """FLAML on the raw table (its own preprocessing), no budgets; the learners, search time and
    seed of the job's budgeted build (its ``BuildConfig``)."""
    from flaml.automl import AutoML

    from factory import score

    build = job.result.config
    features = raw_features(job)
    fit_rows = job.fit_idx
    automl: Any = cast(Any, AutoML)()  # FLAML ships no annotations: Any, said once here
    started = time.perf_counter()
    automl.fit(
        X_train=features.iloc[fit_rows],
        y_train=pd.Series(job.labels[fit_rows], name=job.dataset.target),
        task="classification",
        metric=_FLAML_METRIC.get(job.metric, job.metric),
        estimator_list=list(build.learners),
        time_budget=build.time_budget_s,
        seed=build.seed,
        verbose=0,
        log_file_name="",
    )
    fit_seconds = time.perf_counter() - started
    classes = job.classes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FLAML warns about test categories unseen in training
        proba = np.asarray(automl.predict_proba(features.iloc[job.test_idx]))
    model_classes = [str(c) for c in getattr(automl, "classes_", classes)]
    if model_classes != classes:  # align columns to the artifact's class order
        proba = proba[:, [model_classes.index(c) for c in classes]]
    y_true = np.array([classes.index(str(v)) for v in job.labels[job.test_idx]])
    quality, _ = score(job.metric, y_true, proba, len(classes))
    config = automl.best_config if isinstance(automl.best_config, dict) else {}
    return FlamlRun(
        automl=automl,
        columns=list(job.columns),
        learners=list(build.learners),
        learner=automl.best_estimator,
        config={k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))},
        test_quality=quality,
        fit_seconds=fit_seconds,
        train_rows=len(fit_rows),
    )


def _register_booster_converters() -> None:
    """skl2onnx's documented recipe for LightGBM/XGBoost inside a Pipeline (onnxmltools)."""
    from lightgbm import LGBMClassifier
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    from xgboost import XGBClassifier

    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    update_registered_converter(
        LGBMClassifier,
        "LightGbmLGBMClassifier",
        calculate_linear_classifier_output_shapes,
        convert_lightgbm,
        options=options,
    )
    update_registered_converter(
        XGBClassifier,
        "XGBoostXGBClassifier",
        calculate_linear_classifier_output_shapes,
        convert_xgboost,
        options=options,
    )


@dataclass
class DefaultGraph:
    """skl2onnx's default graph of the same model, with single-row and batch sessions."""

    model_bytes: bytes
    input_names: list[str]
    single: Any
    batch: Any
    num: list[str]
    cat: list[str]

    def feeds_from_record(self, record: dict[str, Any]) -> dict[str, np.ndarray]:
        """One ``[1, 1]`` tensor per column; missing strings are '' (what the imputer replaces)."""
        feeds: dict[str, np.ndarray] = {}
        for c in self.num:
            v = record.get(c)
            feeds[c] = np.array([[np.nan if v is None else v]], dtype=np.float32)
        for c in self.cat:
            v = record.get(c)
            feeds[c] = np.array([["" if v is None else v]], dtype=object)
        return feeds

    def feeds_from_frame(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        for c in self.num:
            feeds[c] = frame[c].to_numpy(dtype=np.float32).reshape(-1, 1)
        for c in self.cat:
            feeds[c] = frame[c].astype(object).where(frame[c].notna(), "").to_numpy(dtype=object).reshape(-1, 1)
        return feeds


def _artifact_opsets(job: Job) -> dict[str, int]:
    """The opsets of the artifact's own graph, so both graphs use the same operator versions."""
    import onnx

    from edge_runtime.artifact import MODEL_FILE

    graph = onnx.load(str(job.artifact_dir / MODEL_FILE), load_external_data=False)
    return {o.domain or "": int(o.version) for o in graph.opset_import if (o.domain or "") in ("", "ai.onnx.ml")}


def default_onnx_graph(job: Job) -> DefaultGraph:
    """Convert Pipeline(ColumnTransformer, the chosen fitted model) with skl2onnx's defaults."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    from edge_runtime.session import make_session

    _register_booster_converters()
    missing_token = job.manifest.input_layout.missing_token
    model = job.result.native_pipeline.named_steps["model"]
    transformers: list[tuple[str, Any, list[str]]] = []
    if job.num:
        transformers.append(("num", SimpleImputer(strategy="median", keep_empty_features=True), job.num))
    if job.cat:
        # skl2onnx's string imputer needs a string missing value: '' stands for missing here.
        transformers.append(
            (
                "cat",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", missing_values="", fill_value=missing_token)),
                        ("encode", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)),
                    ]
                ),
                job.cat,
            )
        )
    train = job.frame.iloc[job.train_idx]
    train_input = train.copy()
    for c in job.cat:
        train_input[c] = train[c].astype(object).where(train[c].notna(), "")
    columns = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0).fit(train_input)
    pipeline = Pipeline([("columns", columns), ("model", model)])
    initial_types = [(c, FloatTensorType([None, 1])) for c in job.num] + [
        (c, StringTensorType([None, 1])) for c in job.cat
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onx = convert_sklearn(pipeline, initial_types=initial_types, target_opset=_artifact_opsets(job))
    blob = onx.SerializeToString()
    # The sessions edgeseg's classifier makes (one thread / every core, no spinning), so the
    # difference measured is the graph's layout, not the session settings.
    single = make_session(blob, threads=1)
    return DefaultGraph(
        model_bytes=blob,
        input_names=[i.name for i in single.get_inputs()],
        single=single,
        batch=make_session(blob, threads=os.cpu_count() or 1),
        num=job.num,
        cat=job.cat,
    )


@dataclass
class Booster:
    """A bare gradient-boosted booster with its own predict on pre-encoded float32 rows."""

    kind: str  # "lightgbm" or "xgboost"
    source: str  # where the model came from, for the report
    booster: Any
    model: Any  # the sklearn-API model, for pickling
    single: Any = None  # XGBoost: a one-thread copy for single rows

    def predict_single(self, row: np.ndarray) -> np.ndarray:
        """One row on one thread: a till classifies one customer at a time."""
        if self.kind == "lightgbm":
            return np.asarray(self.booster.predict(row, num_threads=1))
        return np.asarray(self.single.inplace_predict(row))

    def predict_batch(self, matrix: np.ndarray) -> np.ndarray:
        if self.kind == "lightgbm":
            return np.asarray(self.booster.predict(matrix))
        return np.asarray(self.booster.inplace_predict(matrix))


_LGBM_KEYS = {
    "n_estimators",
    "num_leaves",
    "min_child_samples",
    "learning_rate",
    "colsample_bytree",
    "subsample",
    "reg_alpha",
    "reg_lambda",
    "max_depth",
}


def native_booster(job: Job, seed: int) -> Booster:
    """The chosen model's booster if it is one; else a LightGBM of the size the search found.

    "The size the search found" is the best feasible LightGBM trial's configuration (trees,
    leaves, learning rate), retrained on the same preprocessed training rows.
    """
    model = job.result.native_pipeline.named_steps["model"]
    module = type(model).__module__
    if module.startswith("lightgbm"):
        return Booster("lightgbm", "the chosen model's LightGBM booster", model.booster_, model)
    if module.startswith("xgboost"):
        booster = model.get_booster()
        single = booster.copy()
        single.set_param({"nthread": 1})
        return Booster("xgboost", "the chosen model's XGBoost booster", booster, model, single=single)
    from lightgbm import LGBMClassifier

    lgbm_trials = [t for t in job.trials if t.learner == "lgbm" and t.error is None]
    feasible = [t for t in lgbm_trials if t.feasible] or lgbm_trials
    params: dict[str, Any] = {"n_estimators": 100, "num_leaves": 31}
    source = "a default LightGBM (100 trees, 31 leaves; the search tried no LightGBM)"
    if feasible:
        best = min(feasible, key=lambda t: t.loss)
        params = {k: v for k, v in best.config.items() if k in _LGBM_KEYS}
        if "log_max_bin" in best.config:
            params["max_bin"] = (1 << int(best.config["log_max_bin"])) - 1
        source = f"LightGBM retrained with the best feasible LightGBM trial's config (trial {best.index})"
    preprocess = job.result.native_pipeline[:-1]
    classes = job.classes
    y = np.array([classes.index(str(v)) for v in job.labels[job.train_idx]])
    matrix = np.asarray(preprocess.transform(job.frame.iloc[job.train_idx]), dtype=np.float32)
    fitted = LGBMClassifier(**params, random_state=seed, verbose=-1).fit(matrix, y)
    return Booster("lightgbm", source, fitted.booster_, fitted)
