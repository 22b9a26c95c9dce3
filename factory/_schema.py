"""Infer the input schema of a customer table and build the preprocessing that matches it.

Numbers are float32-rounded at load (the graph and the device feed float32, so training on the
same values keeps tree thresholds from flipping); strings are object arrays whose missing values
are NaN, imputed with ``MISSING_TOKEN`` — the same token the graph and the edge use. The
preprocessing is an sklearn ``ColumnTransformer`` of convertible steps only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

from factory._settings import MAX_CATEGORIES, MAX_STRING_LENGTH, MISSING_TOKEN
from factory.errors import FactoryInputError

__all__ = ["InputSchema", "infer_schema", "make_preprocessor", "normalise_frame", "to_float32"]


@dataclass
class InputSchema:
    """Which raw columns are numbers and which are strings, in graph order."""

    num: list[str] = field(default_factory=list)
    cat: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [*self.num, *self.cat]


def infer_schema(frame: pd.DataFrame) -> InputSchema:
    """Numbers (not bool) become numeric inputs; everything else a string input.

    Refuses an all-empty column and a string column with so many distinct values that it can
    only be an identifier, naming the column and what to do.
    """
    schema = InputSchema()
    for name in frame.columns:
        column = frame[name]
        if column.isna().all():
            raise FactoryInputError(f"column {name!r} is empty in every row; drop it with --drop {name}")
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            schema.num.append(str(name))
        else:
            distinct = column.dropna().astype(str).nunique()
            if distinct > MAX_CATEGORIES:
                raise FactoryInputError(
                    f"column {name!r} has {distinct} distinct values (more than {MAX_CATEGORIES}); "
                    f"it looks like an identifier: drop it with --drop {name}"
                )
            schema.cat.append(str(name))
    if not schema.columns:
        raise FactoryInputError("the table has no input columns left after dropping the target")
    return schema


def normalise_frame(frame: pd.DataFrame, schema: InputSchema) -> pd.DataFrame:
    """Raw columns as the native pipeline sees them: float32-exact numbers, object strings.

    Empty strings count as missing (CSV readers disagree on them); strings longer than the
    runtime accepts are refused here, so training never sees what a device would reject.
    """
    out = pd.DataFrame(index=frame.index)
    for name in schema.num:
        out[name] = pd.to_numeric(frame[name], errors="raise").astype(np.float32).astype(np.float64)
    for name in schema.cat:
        values = frame[name].astype(object).where(frame[name].notna(), np.nan)
        text = values.map(lambda v: v if isinstance(v, float) else str(v))
        text = text.where(text != "", np.nan)
        too_long = text.map(lambda v: isinstance(v, str) and len(v) > MAX_STRING_LENGTH)
        if too_long.any():
            raise FactoryInputError(
                f"column {name!r} has values longer than {MAX_STRING_LENGTH} characters "
                f"(row {text.index[too_long.to_numpy()][0]!r})"
            )
        out[name] = text.astype(object)
    return out


def to_float32(matrix: np.ndarray) -> np.ndarray:
    """Cast the preprocessed matrix to float32, as the ONNX graph computes it."""
    return np.asarray(matrix, dtype=np.float32)


def make_preprocessor(schema: InputSchema) -> Pipeline:
    """ColumnTransformer (median-imputed numbers, token-imputed ordinal strings) → float32."""
    transformers = []
    if schema.num:
        transformers.append(("num", SimpleImputer(strategy="median", keep_empty_features=True), schema.num))
    if schema.cat:
        transformers.append(
            (
                "cat",
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(strategy="constant", fill_value=MISSING_TOKEN, missing_values=np.nan),
                        ),
                        (
                            "encode",
                            OrdinalEncoder(
                                handle_unknown="use_encoded_value",
                                unknown_value=-1,
                                dtype=np.float64,
                            ),
                        ),
                    ]
                ),
                schema.cat,
            )
        )
    return Pipeline(
        [
            ("columns", ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)),
            ("as_float32", FunctionTransformer(to_float32)),
        ]
    )
