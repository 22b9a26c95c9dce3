"""Parameter checks shared by the feature builders, in the factory's one message style
(``factory._constraints``)."""

from __future__ import annotations

import pandas as pd

from factory._constraints import Interval, check_param
from factory.errors import FactoryInputError

_POSITIVE = (Interval(float, 0, None, closed="neither"),)


def positive_number(value: object, name: str, owner: str) -> float:
    """``value`` as a float if it is a finite number > 0, else a FactoryInputError naming it."""
    check_param(owner, name, value, _POSITIVE)
    return float(value)  # type: ignore[arg-type]  # checked: a finite real number


def as_cutoff(value: object, owner: str) -> pd.Timestamp:
    """A naive ``pd.Timestamp`` from a Timestamp, datetime or ISO string."""
    try:
        cutoff: pd.Timestamp | None = pd.Timestamp(value)
    except (TypeError, ValueError):
        cutoff = None
    if cutoff is None or pd.isna(cutoff):
        problem = "must be a date or timestamp"
    elif cutoff.tzinfo is not None:
        problem = "must be naive, like the log's timestamps"
    else:
        return cutoff
    raise FactoryInputError(f"The 'cutoff' parameter of {owner} {problem}. Got {value!r} instead.")
