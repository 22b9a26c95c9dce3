"""edgeseg model factory: customer table → budgeted AutoML search → signed ONNX artifact.

>>> from factory import build
>>> result = build("customers.csv", target="segment", drop=["ID"])  # doctest: +SKIP
"""

from factory._build import BuildResult, build
from factory._latency import DeviceProfile
from factory.errors import BudgetError, FactoryError, FactoryInputError, ParityError

__all__ = [
    "BudgetError",
    "BuildResult",
    "DeviceProfile",
    "FactoryError",
    "FactoryInputError",
    "ParityError",
    "build",
]
