"""Global feature importance of the chosen model with SHAP, on the model's own feature matrix.

The matrix the model sees has one column per raw input (numbers imputed, strings ordinal
coded), so an importance per matrix column is an importance per raw input, with no grouping.

What the values explain, per learner (``shap_values`` returns it as ``output``):

- LightGBM / XGBoost: ``TreeExplainer`` on the raw margin (log-odds; one column per class for
  more than two classes, one column for class 1 when there are two), so
  ``expected_value + shap.sum(features) == model raw score``.
- random forest / extra trees: ``TreeExplainer`` on the predicted probability per class.
- logistic regression: ``LinearExplainer`` (interventional, the training rows as background)
  on the decision function (log-odds per class).

Global importance is mean |SHAP| over the explained rows, summed over the explained outputs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ShapResult", "global_importance", "shap_values"]


@dataclass
class ShapResult:
    values: np.ndarray  # [rows, features, outputs]
    base: np.ndarray  # [outputs]
    output: str  # "raw margin (log-odds)" | "probability" | "decision function (log-odds)"
    explainer: str


def _as_3d(values: Any, n_rows: int, n_features: int) -> np.ndarray:
    if isinstance(values, list):  # old-style: one [rows, features] array per output
        return np.stack([np.asarray(v) for v in values], axis=-1)
    array = np.asarray(values)
    if array.ndim == 2:
        return array.reshape(n_rows, n_features, 1)
    return array


def shap_values(model: Any, matrix: np.ndarray, background: np.ndarray | None = None) -> ShapResult:
    """SHAP values of ``model`` on ``matrix`` (float32 feature matrix as the graph computes it)."""
    import shap

    module = type(model).__module__
    x = np.asarray(matrix, dtype=np.float64)
    if module.startswith("sklearn.linear_model"):
        reference = x if background is None else np.asarray(background, dtype=np.float64)
        explainer = shap.LinearExplainer(model, reference)
        values = explainer.shap_values(x)
        kind, name = "decision function (log-odds)", "LinearExplainer"
    else:
        explainer = shap.TreeExplainer(model)
        with warnings.catch_warnings():
            # shap notes that binary LightGBM now returns one array per class; _as_3d takes both
            warnings.filterwarnings("ignore", message="LightGBM binary classifier", category=UserWarning)
            values = explainer.shap_values(x, check_additivity=True)
        is_boosted = module.startswith(("lightgbm", "xgboost"))
        kind = "raw margin (log-odds)" if is_boosted else "probability"
        name = "TreeExplainer"
    array = _as_3d(values, x.shape[0], x.shape[1])
    base = np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64)).reshape(-1)
    return ShapResult(values=array, base=base, output=kind, explainer=name)


def global_importance(
    model: Any, matrix: np.ndarray, features: list[str], *, background: np.ndarray | None = None
) -> dict[str, Any]:
    """Mean |SHAP| per raw input, ranked high to low (``ranking``), with what was explained."""
    result = shap_values(model, matrix, background)
    importance = np.abs(result.values).sum(axis=2).mean(axis=0)
    order = np.argsort(-importance, kind="stable")
    return {
        "method": f"SHAP {result.explainer}, mean |SHAP| over {matrix.shape[0]} held-out rows, summed over outputs",
        "output": result.output,
        "rows": int(matrix.shape[0]),
        # a list, not a dict: manifest.json is written with sorted keys, which would lose the ranking
        "ranking": [{"feature": features[i], "mean_abs_shap": float(importance[i])} for i in order],
    }
