"""Parameter checks shared by the feature builders, with sklearn-style messages."""

from __future__ import annotations

import math
from numbers import Real

import pandas as pd

from factory.errors import FactoryInputError


def positive_number(value: object, name: str, owner: str) -> float:
    """``value`` as a float if it is a finite number > 0, else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise FactoryInputError(
            f"The {name!r} parameter of {owner} must be a finite number > 0. Got {value!r} instead."
        )
    if value <= 0:
        raise FactoryInputError(f"The {name!r} parameter of {owner} must be > 0. Got {value!r} instead.")
    return float(value)


def as_cutoff(value: object, owner: str) -> pd.Timestamp:
    """A naive ``pd.Timestamp`` from a Timestamp, datetime or ISO string."""
    try:
        cutoff = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise FactoryInputError(
            f"The 'cutoff' parameter of {owner} must be a date or timestamp. Got {value!r} instead."
        ) from exc
    if cutoff is pd.NaT or pd.isna(cutoff):
        raise FactoryInputError(
            f"The 'cutoff' parameter of {owner} must be a date or timestamp. Got {value!r} instead."
        )
    if cutoff.tzinfo is not None:
        raise FactoryInputError(
            f"The 'cutoff' parameter of {owner} must be naive, like the log's timestamps. Got {value!r} instead."
        )
    return cutoff
