"""edgeseg model factory: customer table → budgeted AutoML search → signed ONNX artifact.

>>> from factory import BuildConfig, build
>>> result = build("customers.csv", target="segment", drop=["ID"])  # doctest: +SKIP
>>> config = BuildConfig(target="segment", drop=["ID"], latency_budget_us=30)
>>> result = build("customers.csv", config)  # doctest: +SKIP
>>> result.frame.iloc[result.split.test]  # the held-out rows the metrics used  # doctest: +SKIP
"""

from factory._build import BuildResult, build
from factory._config import Budgets, BuildConfig
from factory._latency import DeviceProfile
from factory._schema import InputSchema
from factory._search import SearchResult, Trial, score
from factory._settings import METRICS, MISSING_TOKEN, ONNX_ML_OPSET, ONNX_OPSET, SUPPORTED_LEARNERS
from factory._spark import spark_session
from factory._stages import DataSplit
from factory.errors import BudgetError, FactoryError, FactoryInputError, ParityError

__all__ = [
    "METRICS",
    "MISSING_TOKEN",
    "ONNX_ML_OPSET",
    "ONNX_OPSET",
    "SUPPORTED_LEARNERS",
    "BudgetError",
    "Budgets",
    "BuildConfig",
    "BuildResult",
    "DataSplit",
    "DeviceProfile",
    "FactoryError",
    "FactoryInputError",
    "InputSchema",
    "ParityError",
    "SearchResult",
    "Trial",
    "build",
    "score",
    "spark_session",
]
