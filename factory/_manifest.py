"""Assemble manifest.json: schema, reference statistics, golden samples, everything docs/DESIGN.md §3 lists.

The reference statistics use the bin rule of docs/ARTIFACT.md so the device's histograms and
central's PSI line up with them without further agreement.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from typing import Any

import numpy as np
import pandas as pd

from edge_runtime.artifact import FORMAT_VERSION
from factory._schema import InputSchema
from factory._settings import GOLDEN_SAMPLES, MAX_STRING_LENGTH, MISSING_TOKEN, REFERENCE_BINS

__all__ = [
    "FORMAT_VERSION",
    "golden_records",
    "input_specs",
    "library_versions",
    "reference_statistics",
    "frame_fingerprint",
    "to_record",
]

_LIBRARIES = (
    "edgeseg",
    "onnxruntime",
    "onnx",
    "flaml",
    "scikit-learn",
    "lightgbm",
    "xgboost-cpu",
    "skl2onnx",
    "onnxmltools",
    "numpy",
    "pandas",
)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def input_specs(train: pd.DataFrame, schema: InputSchema, categories: list[list[str]]) -> list[dict[str, Any]]:
    """One entry per raw column: type, whether required, training range or categories."""
    specs: list[dict[str, Any]] = []
    for name in schema.num:
        column = train[name]
        specs.append(
            {
                "name": name,
                "type": "number",
                "required": False,
                "min": float(column.min()),
                "max": float(column.max()),
                "missing_in_training": float(column.isna().mean()),
            }
        )
    for name, seen in zip(schema.cat, categories, strict=True):
        column = train[name]
        specs.append(
            {
                "name": name,
                "type": "string",
                "required": False,
                "categories": [c for c in seen if c != MISSING_TOKEN],
                "max_length": MAX_STRING_LENGTH,
                "missing_in_training": float(column.isna().mean()),
            }
        )
    return specs


def reference_statistics(train: pd.DataFrame, schema: InputSchema) -> dict[str, dict[str, Any]]:
    """Training distribution of every input, binned as the device will bin live traffic."""
    reference: dict[str, dict[str, Any]] = {}
    n = len(train)
    for name in schema.num:
        values = train[name].to_numpy(dtype=np.float64)
        present = values[~np.isnan(values)]
        edges = np.unique(np.quantile(present, np.linspace(0, 1, REFERENCE_BINS + 1)))
        if len(edges) < 2:
            edges = np.array([edges[0], edges[0] + 1.0])
        k = len(edges) - 1
        bins = np.clip(np.searchsorted(edges, present, side="right") - 1, 0, k - 1)
        counts = np.bincount(bins, minlength=k).astype(float)
        reference[name] = {
            "type": "number",
            "bin_edges": [float(e) for e in edges],
            "proportions": [float(c / n) for c in counts] + [float((n - len(present)) / n)],
        }
    for name in schema.cat:
        column = train[name]
        shares = column.value_counts(dropna=True) / n
        reference[name] = {
            "type": "string",
            "categories": [str(c) for c in shares.index],
            "proportions": [float(s) for s in shares.to_numpy()],
            "other": 0.0,
            "missing": float(column.isna().mean()),
        }
    return reference


def to_record(row: pd.Series, schema: InputSchema) -> dict[str, Any]:
    """A normalised row as the JSON record a till would send (None for missing)."""
    record: dict[str, Any] = {}
    for name in schema.num:
        value = row[name]
        record[name] = None if pd.isna(value) else float(value)
    for name in schema.cat:
        value = row[name]
        record[name] = None if (isinstance(value, float) and np.isnan(value)) or value is None else str(value)
    return record


def golden_records(held_out: pd.DataFrame, stressed: pd.DataFrame, schema: InputSchema, seed: int) -> pd.DataFrame:
    """A handful of rows: real held-out ones plus one all-missing and one unseen-category row."""
    rng = np.random.default_rng(seed)
    picks = held_out.iloc[rng.choice(len(held_out), size=min(GOLDEN_SAMPLES - 2, len(held_out)), replace=False)]
    extra = [stressed.iloc[[0]]]  # the all-missing row
    if schema.cat:
        extra.append(stressed.iloc[[len(stressed) - 1]])  # an unseen-category row
    return pd.concat([picks, *extra], ignore_index=True)


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 over the table's content (row hashes), stable across file formats."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()
