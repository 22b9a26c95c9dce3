"""Turn validated records into the graph's input tensors (docs/ARTIFACT.md, "The graph").

This is the single definition of what a missing value means at the edge: a missing number is
NaN (the graph imputes the training median) and a missing string is the manifest's
``missing_token`` (never NaN: onnxruntime would turn it into the string "nan"). The factory's
parity gate calls these same functions, so training, graph and edge cannot disagree.

Public on purpose: the factory, the benchmarks and the tests encode through it.
``InputLayout`` is the artifact contract's (``edge_runtime.artifact``), re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edge_runtime.artifact import InputLayout

__all__ = ["InputLayout", "encode_columns", "encode_records"]


def _as_float(value: Any) -> float:
    if value is None:
        return float("nan")
    return float(value)


def _as_category(value: Any, missing_token: str) -> str:
    if value is None:
        return missing_token
    if isinstance(value, float) and value != value:  # NaN from a pandas frame
        return missing_token
    text = str(value)
    return text if text != "" else missing_token


def encode_records(layout: InputLayout, records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Encode a list of records (dicts of raw fields; absent key = missing) as graph inputs."""
    feeds: dict[str, np.ndarray] = {}
    if layout.num:
        feeds["num"] = np.array(
            [[_as_float(r.get(name)) for name in layout.num] for r in records], dtype=np.float32
        ).reshape(len(records), len(layout.num))
    if layout.cat:
        token = layout.missing_token
        feeds["cat"] = np.array(
            [[_as_category(r.get(name), token) for name in layout.cat] for r in records],
            dtype=object,
        ).reshape(len(records), len(layout.cat))
    return feeds


def encode_columns(layout: InputLayout, columns: Mapping[str, Sequence[Any]], n_rows: int) -> dict[str, np.ndarray]:
    """Encode a dict of columns (name -> values; absent name = all missing) as graph inputs."""
    feeds: dict[str, np.ndarray] = {}
    if layout.num:
        num = np.full((n_rows, len(layout.num)), np.nan, dtype=np.float32)
        for j, name in enumerate(layout.num):
            values = columns.get(name)
            if values is not None:
                num[:, j] = [_as_float(v) for v in values]
        feeds["num"] = num
    if layout.cat:
        token = layout.missing_token
        cat = np.full((n_rows, len(layout.cat)), token, dtype=object)
        for j, name in enumerate(layout.cat):
            values = columns.get(name)
            if values is not None:
                cat[:, j] = [_as_category(v, token) for v in values]
        feeds["cat"] = cat
    return feeds
