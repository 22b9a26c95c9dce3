"""Infer the input schema of a customer table and build the preprocessing that matches it.

Numbers are float32-rounded at load (the graph and the device feed float32, so training on the
same values keeps tree thresholds from flipping); strings are object arrays whose missing values
are NaN, imputed with ``MISSING_TOKEN`` — the same token the graph and the edge use. The
preprocessing is an sklearn ``ColumnTransformer`` of convertible steps only.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

from edge_runtime.dates import DateColumn, DateDeriver
from edge_runtime.exceptions import SchemaError
from factory._columns import (
    DATE_SHARE,
    ID_UNIQUE_SHARE,
    blank_to_missing,
    detect_date_format,
    integer_identifier,
    is_boolean,
    numeric_text_report,
    parse_numbers,
)
from factory._settings import MAX_STRING_LENGTH, MISSING_TOKEN
from factory.errors import FactoryInputError

__all__ = [
    "CATEGORY_CAP",
    "CappedOrdinalEncoder",
    "ColumnInfo",
    "DateSpec",
    "DonorKNNImputer",
    "InputSchema",
    "infer_schema",
    "make_preprocessor",
    "normalise_frame",
    "render_schema",
    "to_float32",
]


# A string column with more distinct values than this (and not an identifier) keeps its
# CATEGORY_CAP most frequent training values; every other value is "other" (code -1, the code
# an unseen category gets in the graph and on the device alike).
CATEGORY_CAP = 100
DATE_INPUT_SUFFIX = {"days_before": "_days_before", "month": "_month", "weekday": "_weekday"}


@dataclass(frozen=True)
class ColumnInfo:
    """One column of the table as the inference read it (the table ``inspect`` shows)."""

    name: str
    kind: str  # number | boolean | category | date | dropped | identifier
    reason: str
    missing_share: float
    distinct: int
    inputs: tuple[str, ...] = ()  # the model inputs made from it (none: not an input)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "reason": self.reason,
            "missing_share": round(self.missing_share, 6),
            "distinct": self.distinct,
            "inputs": list(self.inputs),
        }


@dataclass(frozen=True)
class DateSpec:
    """A date column: its format, the build's reference moment, and the inputs derived from it."""

    column: str
    format: str
    reference: dt.datetime
    outputs: dict[str, str]  # derived feature (edge_runtime.dates.DATE_FEATURES) -> input name

    def edge_column(self) -> DateColumn:
        return DateColumn(self.column, self.format, self.reference, self.outputs)

    def to_manifest(self) -> dict[str, Any]:
        return {
            "name": self.column,
            "format": self.format,
            "reference": self.reference.isoformat(),
            "outputs": dict(self.outputs),
        }


@dataclass
class InputSchema:
    """Which raw columns are numbers and which are strings, in graph order.

    ``num``/``cat`` are the graph's inputs (a date column appears as its derived numbers);
    ``text_numbers`` the number inputs read from text cells, ``caps`` the string inputs whose
    vocabulary is capped (top-K), ``dates`` the date columns, ``columns_read`` every column of
    the table with the kind chosen and why.
    """

    num: list[str] = field(default_factory=list)
    cat: list[str] = field(default_factory=list)
    text_numbers: list[str] = field(default_factory=list)
    caps: dict[str, int] = field(default_factory=dict)
    dates: list[DateSpec] = field(default_factory=list)
    columns_read: list[ColumnInfo] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [*self.num, *self.cat]

    @property
    def derived(self) -> dict[str, str]:
        """Derived input name -> its source date column."""
        return {target: spec.column for spec in self.dates for target in spec.outputs.values()}

    def report(self) -> list[dict[str, Any]]:
        """The inference table as JSON (the manifest's ``data.schema``)."""
        return [info.to_dict() for info in self.columns_read]


def _distinct(values: pd.Series) -> int:
    return int(values.dropna().astype(str).nunique())


def _date_column(
    name: str, text: pd.Series, forced: str | None, *, required: bool
) -> tuple[str, str, pd.Series] | None:
    """(format, reason, parsed datetimes) of a date column; None when it is not one.

    ``forced`` is a format given as ``--date-column NAME=FORMAT``; ``required`` (the column
    was named with ``--date-column``) lowers the share of cells that must parse to a half and
    turns a failure into an error.
    """
    present = text.dropna().astype(str)
    distinct = present.unique().tolist()
    if forced is not None:
        fmt, ambiguous = forced, False
    else:
        found = detect_date_format(distinct, share=0.5 if required else DATE_SHARE)
        if found is None:
            if required:
                raise FactoryInputError(
                    f"--date-column {name}: no common date format reads its values (e.g. {distinct[:3]}); "
                    f"give the format as --date-column {name}=FORMAT (strptime, e.g. %d-%m-%Y)"
                )
            return None
        fmt, ambiguous = found
    parsed = pd.to_datetime(text.map(lambda v: v.strip() if isinstance(v, str) else v), format=fmt, errors="coerce")
    bad = int(parsed.isna().sum() - text.isna().sum())
    if parsed.notna().sum() == 0:
        raise FactoryInputError(f"--date-column {name}: no value matches the format {fmt!r} (e.g. {distinct[:3]})")
    why = "named with --date-column" if required else "detected"
    reason = f"date {fmt} ({why}{'; day/month order ambiguous, day first assumed' if ambiguous else ''})"
    if bad:
        reason += f"; {bad} unreadable cell{'s' if bad != 1 else ''} read as missing"
    return fmt, reason, parsed


def infer_schema(
    frame: pd.DataFrame,
    *,
    date_columns: Mapping[str, str | None] | None = None,
    reference_date: dt.datetime | None = None,
    refuse_identifiers: bool = True,
) -> InputSchema:
    """Read every column of the inputs as it comes (``factory._columns`` has the rules).

    Numbers — also text numbers with blanks, separators, currency or percent signs — become
    number inputs; dates (detected, or named in ``date_columns``: name -> format or None)
    become the numbers the device derives (``edge_runtime.dates``) against ``reference_date``
    (default: the latest date in the table); yes/no-like columns are booleans; other text is
    a category, capped at ``CATEGORY_CAP`` values; constant columns are dropped. An all-empty
    column and (with ``refuse_identifiers``) an identifier are refused naming the column.
    """
    forced = dict(date_columns or {})
    unknown = [name for name in forced if name not in frame.columns]
    if unknown:
        raise FactoryInputError(
            f"--date-column {unknown[0]!r} is not an input column; columns are: {', '.join(map(str, frame.columns))}"
        )
    schema = InputSchema()
    infos: list[ColumnInfo] = []
    parsed_dates: dict[str, tuple[str, pd.Series]] = {}
    for raw_name in frame.columns:
        name = str(raw_name)
        column = frame[raw_name]
        values = blank_to_missing(column)
        missing = float(values.isna().mean())
        distinct = _distinct(values)
        if values.isna().all():
            raise FactoryInputError(f"column {name!r} is empty in every row; drop it with --drop {name}")

        def note(
            kind: str,
            reason: str,
            inputs: tuple[str, ...] = (),
            *,
            n: str = name,
            m: float = missing,
            d: int = distinct,
        ) -> None:
            infos.append(ColumnInfo(n, kind, reason, m, d, inputs))

        if name in forced or (not pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)):
            found = _date_column(name, values, forced.get(name), required=name in forced)
            if found is not None:
                parsed_dates[name] = (found[0], found[2])
                note("date", found[1])
                continue
        if distinct <= 1:
            only = values.dropna().iloc[0]
            note("dropped", f"constant: {only!r} in every row" + (" with a value" if missing else ""))
            continue
        if pd.api.types.is_bool_dtype(column):
            schema.cat.append(name)
            note("boolean", "true/false values (a string input)", (name,))
            continue
        if pd.api.types.is_numeric_dtype(column):
            numbers = pd.to_numeric(column, errors="coerce")
            why_id = integer_identifier(name, numbers)
            if why_id is not None:
                note("identifier", why_id)
                continue
            schema.num.append(name)
            if is_boolean(values.dropna().unique().tolist()):
                note("boolean", "0/1 values (a number input)", (name,))
            else:
                note("number", "numeric values" + (" with missing cells" if missing else ""), (name,))
            continue
        present = values.dropna().unique().tolist()
        if is_boolean(present):
            schema.cat.append(name)
            note("boolean", f"two values {sorted(map(str, present))} (a string input)", (name,))
            continue
        as_numbers = numeric_text_report(values)
        if as_numbers is not None:
            why_id = integer_identifier(name, as_numbers[0])
            if why_id is not None:
                note("identifier", why_id)
                continue
            schema.num.append(name)
            schema.text_numbers.append(name)
            blanks = int((column.notna() & values.isna()).sum())
            reason = as_numbers[1] + (
                f"; {blanks} blank cell{'s' if blanks != 1 else ''} read as missing" if blanks else ""
            )
            note("number", reason, (name,))
            continue
        n_present = int(values.notna().sum())
        if n_present >= 20 and distinct >= ID_UNIQUE_SHARE * n_present:
            note("identifier", f"{distinct} distinct values in {n_present} rows: near-unique text")
            continue
        schema.cat.append(name)
        if distinct > CATEGORY_CAP:
            schema.caps[name] = CATEGORY_CAP
            note(
                "category",
                f"{distinct} distinct values: the {CATEGORY_CAP} most frequent kept, the rest read as 'other'",
                (name,),
            )
        else:
            note("category", f"{distinct} text values", (name,))
    if parsed_dates:
        latest = max(series.max() for _, series in parsed_dates.values())
        reference = reference_date or latest.to_pydatetime()
        taken = set(map(str, frame.columns))
        for name, (fmt, _) in parsed_dates.items():
            outputs = {kind: f"{name}{suffix}" for kind, suffix in DATE_INPUT_SUFFIX.items()}
            clash = sorted(set(outputs.values()) & taken)
            if clash:
                raise FactoryInputError(
                    f"date column {name!r} derives the input {clash[0]!r}, which the table already has; rename one"
                )
            schema.dates.append(DateSpec(name, fmt, reference, outputs))
            schema.num.extend(outputs.values())
            at = next(i for i, info in enumerate(infos) if info.name == name)
            info = infos[at]
            infos[at] = ColumnInfo(
                info.name, info.kind, f"{info.reason}; reference {reference.date()}", info.missing_share,
                info.distinct, tuple(outputs.values()),
            )  # fmt: skip
    schema.columns_read = infos
    identifiers = [info for info in infos if info.kind == "identifier"]
    if identifiers and refuse_identifiers:
        first = identifiers[0]
        raise FactoryInputError(
            f"column {first.name!r} has {first.distinct} distinct values ({first.reason}); "
            f"it looks like an identifier: drop it with --drop {first.name}"
        )
    if not schema.columns:
        raise FactoryInputError("the table has no input columns left after dropping the target")
    return schema


def render_schema(schema: InputSchema) -> list[tuple[str, str, str, str, str]]:
    """Rows (column, type, missing, distinct, why) of the inference table, for people."""
    rows = []
    for info in schema.columns_read:
        kind = info.kind
        if info.inputs and info.inputs != (info.name,):
            kind += " → " + ", ".join(info.inputs)
        rows.append((info.name, kind, f"{info.missing_share:.1%}", str(info.distinct), info.reason))
    return rows


def normalise_frame(frame: pd.DataFrame, schema: InputSchema) -> pd.DataFrame:
    """Raw columns as the native pipeline sees them: float32-exact numbers, object strings.

    Blank and whitespace-only cells are missing; text numbers are parsed by the inference's
    rule; date columns become their derived numbers by the device's own code
    (``edge_runtime.dates``), so training and device cannot disagree. Strings longer than the
    runtime accepts are refused here, so training never sees what a device would reject.
    """
    out = pd.DataFrame(index=frame.index)
    derived = schema.derived
    for spec in schema.dates:
        deriver = DateDeriver([spec.edge_column()])
        values = blank_to_missing(frame[spec.column]).tolist()
        try:
            columns = deriver.column_values(deriver.columns[0], values)
        except SchemaError as exc:  # a cell the detection tolerated: missing, as it reported
            columns = _derive_lenient(deriver.columns[0], values) if exc.field == spec.column else {}
        for target, column in columns.items():
            out[target] = np.asarray(column, dtype=np.float32).astype(np.float64)
    for name in schema.num:
        if name in derived:
            continue
        if name in schema.text_numbers:
            numbers = parse_numbers(blank_to_missing(frame[name]))
        else:
            numbers = pd.to_numeric(frame[name], errors="raise")
        out[name] = numbers.astype(np.float32).astype(np.float64)
    for name in schema.cat:
        values = frame[name].astype(object).where(frame[name].notna(), np.nan)
        # Every present value as its text (a workbook column can mix 1, "a" and 2.5; the device
        # receives strings), missing cells as NaN.
        text = values.map(lambda v: v if isinstance(v, float) and math.isnan(v) else str(v))
        text = text.where(text.map(lambda v: not isinstance(v, str) or v.strip() != ""), np.nan)
        too_long = text.map(lambda v: isinstance(v, str) and len(v) > MAX_STRING_LENGTH)
        if too_long.any():
            raise FactoryInputError(
                f"column {name!r} has values longer than {MAX_STRING_LENGTH} characters "
                f"(row {text.index[too_long.to_numpy()][0]!r})"
            )
        out[name] = text.astype(object)
    return out[schema.columns]


def _derive_lenient(column: DateColumn, values: list[Any]) -> dict[str, list[float]]:
    """Derived columns where an unreadable date is missing (training rows only)."""
    derived: dict[str, list[float]] = {target: [] for _, target in column.outputs}
    for value in values:
        try:
            triple = column.values(value)
        except SchemaError:
            triple = (math.nan, math.nan, math.nan)
        for position, target in column.outputs:
            derived[target].append(triple[position])
    return derived


def to_float32(matrix: np.ndarray) -> np.ndarray:
    """Cast the preprocessed matrix to float32, as the ONNX graph computes it."""
    return np.asarray(matrix, dtype=np.float32)


class DonorKNNImputer(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # sklearn is untyped
    """k-nearest-neighbour imputation of numbers that the ONNX graph reproduces exactly.

    A missing value is the mean of that column over the ``n_neighbors`` nearest *donors*: at
    most ``max_donors`` complete training rows (no missing value), sampled with
    ``random_state`` and kept as float32. Distance is the squared euclidean distance over the
    coordinates the row has — the same ranking as scikit-learn's ``nan_euclidean`` distance,
    whose rescaling factor is the same for every complete donor. Ties go to the donor with the
    lower index (ONNX ``TopK``'s documented tie-break; the native side uses a stable sort). A row
    with no number at all gets the training medians (``statistics_``).

    Why not scikit-learn's ``KNNImputer`` with skl2onnx's converter: measured with skl2onnx
    1.19 and onnxruntime here, the converter needs opset 18 while onnxmltools' LightGBM/XGBoost
    converters stop at 15; its graph fails on a row with every number missing (GatherElements
    index out of range); and on the segmentation data it disagrees with scikit-learn by up to
    4.4 (years of Age) wherever distances tie, because the two break ties differently. The
    donor cap bounds the graph's size (``max_donors * n_num * 4`` bytes) and its single-row
    latency: measured here (3 numbers, one thread) the imputer subgraph costs p50 about 12 µs
    with 64 donors, 13 µs with 128 (the default), 17 µs with 256, against about 1 µs for the
    median ``Imputer`` node — mostly per-node overhead of its 17 small nodes.
    """

    def __init__(self, n_neighbors: int = 5, max_donors: int = 128, random_state: int = 0) -> None:
        self.n_neighbors = n_neighbors
        self.max_donors = max_donors
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: object = None) -> DonorKNNImputer:
        values = np.asarray(X, dtype=np.float64)
        complete = values[~np.isnan(values).any(axis=1)]
        if len(complete) < self.n_neighbors:
            raise FactoryInputError(
                f"--numeric-imputer knn needs at least {self.n_neighbors} training rows with every number present; "
                f"the training split has {len(complete)}"
            )
        rng = np.random.default_rng(self.random_state)
        if len(complete) > self.max_donors:
            complete = complete[np.sort(rng.choice(len(complete), size=self.max_donors, replace=False))]
        self.donors_ = complete.astype(np.float32)
        with np.errstate(all="ignore"):
            medians = np.nanmedian(values, axis=0) if len(values) else np.zeros(values.shape[1])
        self.statistics_ = np.where(np.isnan(medians), 0.0, medians).astype(np.float32)
        self.n_features_in_ = values.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "donors_")
        values = np.asarray(X, dtype=np.float32).copy()
        missing = np.isnan(values)
        rows = np.flatnonzero(missing.any(axis=1))
        k = min(self.n_neighbors, len(self.donors_))
        for start in range(0, len(rows), 1024):  # bounded memory: rows x donors x features
            chunk = rows[start : start + 1024]
            x = np.where(missing[chunk], np.float32(0), values[chunk])
            present = (~missing[chunk]).astype(np.float32)
            diff = x[:, None, :] - self.donors_[None, :, :]
            d2 = (diff * diff * present[:, None, :]).sum(axis=2, dtype=np.float32)
            nearest = np.argsort(d2, axis=1, kind="stable")[:, :k]
            fill = self.donors_[nearest].mean(axis=1, dtype=np.float32)
            none = present.sum(axis=1) == 0
            fill[none] = self.statistics_
            values[chunk] = np.where(missing[chunk], fill, values[chunk])
        return values.astype(np.float64)


class CappedOrdinalEncoder(OrdinalEncoder):  # type: ignore[misc]  # sklearn is untyped
    """``OrdinalEncoder`` (unknown -> -1) that keeps only the ``caps[j]`` most frequent training
    values of column j (0: all of them); the others are "other" and get -1, the code the graph's
    ``LabelEncoder`` gives any string outside ``categories_`` — so a rare value is read the same
    way in training, in the graph and on the device. The missing token is always kept (missing
    is not "other"). The export reads ``categories_`` as for the plain encoder.
    """

    def __init__(self, caps: tuple[int, ...] = ()) -> None:
        super().__init__(handle_unknown="use_encoded_value", unknown_value=-1, dtype=np.float64)
        self.caps = caps

    def fit(self, X: Any, y: object = None) -> CappedOrdinalEncoder:
        if not any(self.caps):
            self.categories = "auto"
            return super().fit(X)  # type: ignore[no-any-return]
        values = np.asarray(X, dtype=object)
        categories = []
        for j in range(values.shape[1]):
            column = pd.Series(values[:, j])
            cap = self.caps[j] if j < len(self.caps) else 0
            if cap:
                counts = column[column != MISSING_TOKEN].value_counts()
                counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
                kept = set(counts.index[:cap].tolist()) | ({MISSING_TOKEN} & set(column.tolist()))
            else:
                kept = set(column.tolist())
            categories.append(np.array(sorted(kept), dtype=object))
        self.categories = categories  # type: ignore[assignment]  # sklearn: "auto" or per-column lists
        return super().fit(X)  # type: ignore[no-any-return]


def make_preprocessor(schema: InputSchema, *, numeric_imputer: str = "median", seed: int = 0) -> Pipeline:
    """ColumnTransformer (imputed numbers, token-imputed ordinal strings) → float32.

    ``numeric_imputer``: ``"median"`` (training median) or ``"knn"`` (:class:`DonorKNNImputer`).
    """
    transformers = []
    if schema.num:
        imputer = (
            DonorKNNImputer(random_state=seed)
            if numeric_imputer == "knn"
            else SimpleImputer(strategy="median", keep_empty_features=True)
        )
        transformers.append(("num", imputer, schema.num))
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
                        ("encode", CappedOrdinalEncoder(caps=tuple(schema.caps.get(c, 0) for c in schema.cat))),
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
