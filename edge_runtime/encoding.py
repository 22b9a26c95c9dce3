"""Turn validated records into the graph's input tensors (docs/ARTIFACT.md, "The graph").

This is the single definition of what a missing value means at the edge: a missing number is
NaN (the graph imputes the training median) and a missing string is the manifest's
``missing_token`` (never NaN: onnxruntime would turn it into the string "nan"). The factory's
parity gate calls these same functions, so training, graph and edge cannot disagree.

The float-only graph (``manifest.float_graph``, docs/ARTIFACT.md) takes category *codes*
instead of strings: :class:`CategoryCodes` turns the ``cat`` tensor into them with the
LabelEncoder's own rule (a string's position in the signed vocabulary, -1 for anything else),
vectorised (a sorted vocabulary and ``searchsorted`` for numpy string columns, dict lookups
for object columns), and :func:`float_features` lays out the graph's one ``features`` input.

Public on purpose: the factory, the benchmarks and the tests encode through it.
``InputLayout`` is the artifact contract's (``edge_runtime.artifact``), re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edge_runtime.artifact import InputLayout

__all__ = ["CategoryCodes", "InputLayout", "encode_columns", "encode_records", "float_features"]


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


class CategoryCodes:
    """String -> code maps of the float-only graph, one per ``input_layout.cat`` column.

    ``vocabularies[j]`` lists column j's strings in code order (``FloatGraph.codes``). A string
    in it gets its position, any other string -1.0 (what ``LabelEncoder(default_float=-1)``
    does in the raw graph); the missing token is just a string here.
    """

    __slots__ = ("maps", "_sorted", "_order")

    def __init__(self, vocabularies: Sequence[Sequence[str]]) -> None:
        self.maps: tuple[dict[str, float], ...] = tuple(
            {text: float(code) for code, text in enumerate(vocabulary)} for vocabulary in vocabularies
        )
        self._sorted: list[np.ndarray] = []
        self._order: list[np.ndarray] = []
        for vocabulary in vocabularies:
            keys = np.array(list(vocabulary), dtype=str)
            order = np.argsort(keys, kind="stable")
            self._sorted.append(keys[order])
            self._order.append(order.astype(np.float32))

    def column(self, j: int, values: np.ndarray) -> np.ndarray:
        """Codes (float32) of one column of strings: numpy ``str`` or object (str cells)."""
        if values.dtype.kind != "U":  # object cells: a dict lookup each beats converting to str
            lookup = self.maps[j].get
            return np.array([lookup(v, -1.0) for v in values.tolist()], dtype=np.float32)
        keys = self._sorted[j]
        if not len(keys):
            return np.full(len(values), -1.0, dtype=np.float32)
        at = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
        codes: np.ndarray = np.where(keys[at] == values, self._order[j][at], np.float32(-1.0))
        return codes.astype(np.float32, copy=False)

    def encode(self, cat: np.ndarray) -> np.ndarray:
        """Codes ``[N, n_cat]`` (float32) of a ``cat`` tensor ``[N, n_cat]``."""
        out = np.empty(cat.shape, dtype=np.float32)
        for j in range(cat.shape[1]):
            out[:, j] = self.column(j, cat[:, j])
        return out


def float_features(feeds: Mapping[str, np.ndarray], codes: CategoryCodes) -> np.ndarray:
    """The float-only graph's ``features`` ``[N, n_num + n_cat]`` from raw-graph feeds."""
    parts = []
    if "num" in feeds:
        parts.append(np.asarray(feeds["num"], dtype=np.float32))
    if "cat" in feeds:
        parts.append(codes.encode(feeds["cat"]))
    if len(parts) == 1:
        return np.ascontiguousarray(parts[0])
    return np.concatenate(parts, axis=1)
