"""Explanations for the model card: SHAP importance, interpretable baselines, plots.

The per-record explanation on the device lives in ``edge_runtime.explain`` (numpy +
onnxruntime only); the factory writes the reference record it needs into the manifest.
"""

from ._baseline import baseline_models, interpretable_baselines
from ._plots import confusion_matrix_png, importance_png, pareto_png
from ._reference import reference_record
from ._shap import ShapResult, global_importance, shap_values

__all__ = [
    "ShapResult",
    "baseline_models",
    "confusion_matrix_png",
    "global_importance",
    "importance_png",
    "interpretable_baselines",
    "pareto_png",
    "reference_record",
    "shap_values",
]
