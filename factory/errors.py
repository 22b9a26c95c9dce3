"""Errors the factory raises on purpose.

    FactoryError (Exception)
    ├── FactoryInputError (also ValueError)    the data or an option is unusable; names it
    ├── BudgetError (also ValueError)          no candidate met the latency and size budgets
    └── ParityError                            the ONNX graph disagrees with the native model

The CLI prints these as one line (no traceback unless --debug) and exits non-zero.
"""

from __future__ import annotations


class FactoryError(Exception):
    """Base class of the factory's deliberate errors."""


class FactoryInputError(FactoryError, ValueError):
    """The input data or a parameter is unusable; the message names the field and the value."""


class BudgetError(FactoryError, ValueError):
    """No searched candidate met every budget; the message names the closest ones."""


class ParityError(FactoryError):
    """The exported graph disagrees with the native pipeline beyond tolerance; nothing is written."""
