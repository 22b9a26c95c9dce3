"""What the manifest and the card report about the chosen model, besides the search itself:
test metrics, segment profiles, SHAP importance with interpretable baselines, and the effect of
the numeric imputer. Each takes the build's data explicitly so it can be tested alone.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from factory._schema import InputSchema, make_preprocessor
from factory._search import score
from factory._settings import METRICS

__all__ = ["explanations", "held_out_metrics", "json_safe", "preprocessing_report", "segment_profiles"]


def held_out_metrics(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, Any]:
    k = len(classes)
    predicted = proba.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, labels=list(range(k)), zero_division=0
    )
    result: dict[str, Any] = {m: score(m, y_true, proba, k)[0] for m in METRICS}
    result = {m: (None if isinstance(v, float) and math.isnan(v) else v) for m, v in result.items()}
    result["per_class"] = {
        c: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    }
    result["confusion_matrix"] = confusion_matrix(y_true, predicted, labels=list(range(k))).tolist()
    return result


def segment_profiles(train: pd.DataFrame, y: np.ndarray, schema: InputSchema, classes: list[str]) -> dict[str, Any]:
    profiles: dict[str, Any] = {}
    for i, name in enumerate(classes):
        rows = train[y == i]
        profiles[name] = {
            "count": int(len(rows)),
            "share": float(len(rows) / len(train)),
            "medians": {c: float(rows[c].median()) for c in schema.num if rows[c].notna().any()},
            "top_categories": {c: str(rows[c].mode().iloc[0]) for c in schema.cat if rows[c].notna().any()},
        }
    return profiles


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


# SHAP on at most this many test rows: enough for a stable global ranking, bounded in time
# (TreeExplainer on a 100-tree forest is milliseconds per row).
SHAP_ROWS = 200


def explanations(
    model: Any,
    preprocessor: Any,
    train_matrix: np.ndarray,
    y_train: np.ndarray,
    test: pd.DataFrame,
    y_test: np.ndarray,
    schema: InputSchema,
    classes: list[str],
    seed: int,
    **baseline_options: Any,
) -> dict[str, Any]:
    """Global SHAP importance of the chosen model and the interpretable baselines (for the card).

    ``baseline_options`` go to ``interpretable_baselines`` (the metric, the search's fitted
    baselines and their trials)."""
    from factory.explain import global_importance, interpretable_baselines

    test_matrix = preprocessor.transform(test)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(test_matrix), size=min(SHAP_ROWS, len(test_matrix)), replace=False)
    background = train_matrix[rng.choice(len(train_matrix), size=min(SHAP_ROWS, len(train_matrix)), replace=False)]
    try:
        importance: dict[str, Any] = global_importance(model, test_matrix[rows], schema.columns, background=background)
    except Exception as exc:  # an explainer gap must not cost the user the model; the card says so
        importance = {"method": None, "error": f"{type(exc).__name__}: {exc}"[:300], "ranking": []}
    baseline = interpretable_baselines(
        (train_matrix, y_train), (test_matrix, y_test), schema.columns, classes, seed, **baseline_options
    )
    return {"global_importance": importance, "baseline": baseline}


def preprocessing_report(
    numeric_imputer: str,
    model: Any,
    train: pd.DataFrame,
    y_train: np.ndarray,
    test: pd.DataFrame,
    y_test: np.ndarray,
    schema: InputSchema,
    metric: str,
    classes: list[str],
    seed: int,
) -> dict[str, Any]:
    """The imputer used and, for knn, its effect: the chosen learner with its chosen config
    refitted on median-imputed features, both scored on the same test rows."""
    report: dict[str, Any] = {
        "numeric_imputer": numeric_imputer,
        "missing_in_training": {c: float(train[c].isna().mean()) for c in schema.num if train[c].isna().any()},
    }
    if numeric_imputer != "knn" or not schema.num:
        return report
    from sklearn.base import clone

    quality = {}
    for name in ("median", "knn"):
        prep = make_preprocessor(schema, numeric_imputer=name, seed=seed).fit(train)
        fitted = clone(model).fit(prep.transform(train), y_train)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            proba = fitted.predict_proba(prep.transform(test))
        quality[name] = score(metric, y_test, proba, len(classes))[0]
    report["comparison"] = {
        "metric": metric,
        "test": quality,
        "note": "the exported learner and config refitted with each imputer on the same split",
    }
    return report
