"""The reference record the device explains against (``manifest.explain.reference_record``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from factory._schema import InputSchema

__all__ = ["reference_record"]


def reference_record(train: pd.DataFrame, schema: InputSchema) -> dict[str, Any]:
    """What "this input is not known" looks like to the model: the training median of every
    number (exactly what the median imputer fills for a missing number) and None — missing —
    for every string (the graph maps it to the missing token, or to "unknown" when training
    never had a missing value there).

    Not the most frequent category: on the retail data 61 % of customers are dormant, so the
    modal customer *is* dormant and occluding ``is_dormant`` with its mode would say nothing
    about a dormant record."""
    record: dict[str, Any] = {}
    for name in schema.num:
        present = train[name].dropna()
        record[name] = float(present.median()) if len(present) else None
    for name in schema.cat:
        record[name] = None
    return record
