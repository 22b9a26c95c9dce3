"""Validate records against a manifest's input schema while writing them into graph buffers.

Rules (docs/ARTIFACT.md, ``inputs``); every violation raises ``SchemaError(field, value, rule)``:

* a required field that is absent, ``None`` or ``""`` -> ``is required``;
* a number field holding anything but an ``int``/``float`` (numpy numbers too) -> ``must be a
  number``; a ``bool`` is refused explicitly (``True`` is an ``int`` to Python, never a tier
  count to a till) -> ``must be a number, not a boolean``;
* NaN or ±inf -> ``must be a finite number`` (send ``null`` for missing, so a broken
  computation upstream is not silently read as "missing"); beyond float32 -> ``must be within
  the float32 range``. Numpy float *columns* (``classify_many``) are the exception: there NaN is
  how missing is written (pandas, numpy), so a NaN cell is missing (``is required`` when the
  field is required) and only ±inf is refused; the column stays vectorised;
* a number outside the range seen in training is **counted, not refused** by default (the
  policy ``out_of_range="fail"`` refuses it). Why: a tree model answers such a value exactly
  as it answers the training extreme, a till cannot fix a customer's real age, and a
  systematic shift is what drift monitoring is for; so refusing would lose a sale for no gain.
  The first occurrence per field is logged once as a warning; the rest only counted.
* a string field holding a non-string -> ``must be a string``; longer than the manifest's
  ``max_length`` (or :data:`DEFAULT_MAX_STRING_LENGTH`) -> ``must be at most N characters``;
  NUL characters or lone surrogates -> ``must be valid text``;
* an unseen category is accepted (the graph encodes it as unknown, as in training) and counted;
* the input contract (``contract``, :data:`CONTRACTS`): ``"strict"`` (default) also requires
  every input that had no missing value in training (``missing_in_training == 0``: the model
  never learnt what a gap there means, so ``{}`` must not come back as a segment) and refuses a
  field the model does not know, naming the closest known name (``difflib``, run only on that
  error path); ``"lenient"`` requires only the manifest's ``required`` inputs and ignores and
  counts unknown fields. The manifest's ``id_field`` is never "unknown": the runtime
  pseudonymises it; nor are its ``ignored_fields`` (the training table's target and dropped
  columns), so a row of the table the model was built from is classified as it is.

``fill`` returns how many inputs of the record were missing (imputed) and how many string
inputs held a category training never saw: :data:`CLEAN` (a shared ``(0, 0)``) on the fast path.

Missing values follow ``edge_runtime.encoding``: a missing number is NaN, a missing or empty string is the
manifest's ``missing_token``. A test checks this fast path against ``encode_records``.

For the float-only graph (``manifest.float_graph``) ``fill(..., codes=True)`` writes each string
field's *code* instead (its position in the signed vocabulary, -1 for anything else: the
``LabelEncoder`` rule of ``edge_runtime.encoding.CategoryCodes``), so one float row is the whole
input; validation is the same dict lookup per field.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from edge_runtime._settings import DEFAULT_MAX_STRING_LENGTH
from edge_runtime.artifact import Manifest
from edge_runtime.exceptions import SchemaError

__all__ = ["CLEAN", "CONTRACTS", "InputStats", "RecordValidator"]

logger = logging.getLogger("edge_runtime")

FLOAT32_MAX = float(np.finfo(np.float32).max)
_NAN = float("nan")
_ABSENT = object()
_MAX_EXTRA_NAMES = 64  # distinct extra field names remembered (a fuzzer must not grow memory)
OUT_OF_RANGE_POLICIES = ("count", "fail")
# The input contract: "strict" refuses gaps training never had and unknown field names.
CONTRACTS = ("strict", "lenient")
# What fill returns for a record with no missing input and no unseen category (no allocation).
CLEAN = (0, 0)


class InputStats:
    """Counters of what validation saw; never raw values. ``snapshot()`` is JSON-ready."""

    __slots__ = (
        "records", "unknown_category", "out_of_range", "extra_fields", "refused", "missing",
        "records_with_missing", "records_with_unknown",
    )  # fmt: skip

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.records = 0  # records that reached validation
        self.refused = 0  # records refused with a SchemaError
        self.unknown_category: dict[str, int] = {}
        self.out_of_range: dict[str, int] = {}
        self.extra_fields: dict[str, int] = {}
        self.missing: dict[str, int] = {}  # per input: records where it was missing (imputed)
        self.records_with_missing = 0
        self.records_with_unknown = 0  # records with at least one unseen category

    def snapshot(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "refused": self.refused,
            "unknown_category": dict(self.unknown_category),
            "out_of_range": dict(self.out_of_range),
            "extra_fields": dict(self.extra_fields),
            "missing": dict(self.missing),
            "records_with_missing": self.records_with_missing,
            "records_with_unknown": self.records_with_unknown,
        }


def _float32_edge(bound: float, direction: float) -> float:
    """The farthest float64 that still rounds to ``float32(bound)`` (direction -1: low, +1: high).

    Training ran in float32 and the manifest stores its float32 extremes (``1590.8199462890625``),
    while a till sends the float64 it read (``1590.82``): a value equal to the training extreme
    *as the model sees it* is in range (the check is inclusive after the same rounding).
    """
    edge = np.float32(bound)
    beyond = np.nextafter(edge, np.float32(direction * np.inf))
    if not np.isfinite(beyond):
        return float(edge)
    return (float(edge) + float(beyond)) / 2


def _shown(x: float) -> str:
    """A bound as short as it stays exact: ``18``, ``1590.8199462890625`` (never a rounded tie)."""
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def _bump(counter: dict[str, int], key: str, by: int = 1) -> None:
    counter[key] = counter.get(key, 0) + by


class RecordValidator:
    """Per-field validators prebuilt from a manifest; fills the ``num`` / ``cat`` buffers.

    The manifest is the contract's typed form, already checked (layout names only inputs of
    the matching type), so nothing here can meet a malformed schema.
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        out_of_range: str = "count",
        codes: Sequence[Sequence[str]] | None = None,
        contract: str = "strict",
    ) -> None:
        if out_of_range not in OUT_OF_RANGE_POLICIES:
            raise ValueError(
                f"The 'out_of_range' parameter of Classifier must be one of "
                f"{OUT_OF_RANGE_POLICIES}. Got {out_of_range!r} instead."
            )
        self.fail_out_of_range = out_of_range == "fail"
        layout = manifest.input_layout
        inputs = {spec.name: spec for spec in manifest.inputs}
        self.missing_token: str = layout.missing_token
        num_names, cat_names = layout.num, layout.cat
        self.num_names = num_names
        self.cat_names = cat_names
        # Required per contract: lenient = the manifest's flag; strict also every input that
        # training never saw missing (its missing share is exactly 0).
        self._required_by: dict[str, dict[str, bool]] = {
            "lenient": {spec.name: spec.required for spec in manifest.inputs},
            "strict": {spec.name: spec.required or spec.missing_in_training == 0.0 for spec in manifest.inputs},
        }
        # (index, name, low, high) of every number input; the required flag joins per contract
        self._num_bounds: list[tuple[int, str, float, float]] = []
        for j, name in enumerate(num_names):
            spec = inputs[name]
            low = -FLOAT32_MAX if spec.min is None else _float32_edge(spec.min, -1.0)
            high = FLOAT32_MAX if spec.max is None else _float32_edge(spec.max, 1.0)
            self._num_bounds.append((j, name, low, high))
        self._max_length: dict[str, int] = {}
        self._known: dict[str, frozenset[str]] = {}
        for name in cat_names:
            spec = inputs[name]
            self._max_length[name] = spec.max_length or DEFAULT_MAX_STRING_LENGTH
            self._known[name] = frozenset(c for c in spec.categories or () if c)
        # Per string field: (index, name, known value -> what to write, slow path). The raw
        # graph gets the string itself; the float-only graph its code (``codes``, in layout order).
        self._cat: list[tuple[int, str, dict[str, Any], Callable[[str, Any, int | None], Any]]] = [
            (j, name, {c: c for c in self._known[name]}, self._string) for j, name in enumerate(cat_names)
        ]
        self._code_maps: dict[str, dict[str, float]] = {}
        self._vocabulary: dict[str, tuple[str, ...]] = {}
        self._cat_codes: list[tuple[int, str, dict[str, Any], Callable[[str, Any, int | None], Any]]] = []
        if codes is not None:
            if len(codes) != len(cat_names):
                raise ValueError(f"codes has {len(codes)} vocabularies for {len(cat_names)} string inputs")
            for j, (name, vocabulary) in enumerate(zip(cat_names, codes, strict=True)):
                self._vocabulary[name] = tuple(vocabulary)
                mapping = self._code_maps[name] = {text: float(code) for code, text in enumerate(vocabulary)}
                known_codes = {c: mapping.get(c, -1.0) for c in self._known[name]}
                self._cat_codes.append((j, name, known_codes, self._string_code))
        self._ranges = {name: (low, high) for _, name, low, high in self._num_bounds}
        # the training range as the manifest says it (messages), not the float32-widened check
        self._shown_ranges = {name: (inputs[name].min, inputs[name].max) for name in num_names}
        self._known_sorted = {name: np.array(sorted(known), dtype=str) for name, known in self._known.items()}
        # codes of the sorted known categories (float-only graph): _known_codes[name][at]
        self._known_codes = {
            name: np.array([self._code_maps[name].get(c, -1.0) for c in ordered.tolist()], dtype=np.float32)
            for name, ordered in self._known_sorted.items()
            if name in self._code_maps
        }
        self.id_field: str | None = manifest.id_field
        self.field_names = frozenset((*num_names, *cat_names))
        # Training-table columns that are not inputs (the target, dropped columns): accepted and
        # ignored under either contract, so a till can send a row of the table the model came from.
        self.ignored_fields = frozenset(manifest.ignored_fields or ())
        self.stats = InputStats()
        self._warned_range: set[str] = set()
        self.set_contract(contract)

    def set_contract(self, contract: str) -> None:
        """Switch the input contract (``"strict"`` or ``"lenient"``); rebuilds the field tables."""
        if contract not in CONTRACTS:
            raise ValueError(f"The 'contract' parameter must be one of {CONTRACTS}. Got {contract!r} instead.")
        self.contract = contract
        self.strict = contract == "strict"
        required = self._required_by[contract]
        self._required = {name: required[name] for name in (*self.num_names, *self.cat_names)}
        # (index, name, low, high, required): one tuple unpacked per number field on the hot path
        self._num: list[tuple[int, str, float, float, bool]] = [
            (j, name, low, high, required[name]) for j, name, low, high in self._num_bounds
        ]

    @property
    def required_names(self) -> tuple[str, ...]:
        """The inputs this contract requires, in layout order (numbers, then strings)."""
        return tuple(name for name, needed in self._required.items() if needed)

    # ------------------------------------------------------------------ one record
    def fill(
        self,
        record: Any,
        num: Any,
        cat: Any,
        num_off: int = 0,
        cat_off: int = 0,
        row: int | None = None,
        codes: bool = False,
    ) -> tuple[int, int]:
        """Validate ``record`` and write it at ``num[num_off:]`` / ``cat[cat_off:]``.

        The hot path of ``Classifier.classify``: one dict lookup and one or two type checks
        per field; anything unusual goes to the slow ``_number`` / ``_string`` helpers.
        ``codes=True`` (a validator made with ``codes``) writes string fields as float codes.
        Returns ``(missing inputs, unseen categories)`` of this record (:data:`CLEAN` if none).
        """
        self.stats.records += 1
        try:
            get = record.get
            size = len(record)
        except (AttributeError, TypeError):
            self.stats.refused += 1
            raise SchemaError("<record>", record, "must be a mapping of field names to values", row=row) from None
        present = missing = unknown = 0
        try:
            for j, name, low, high, required in self._num:
                v = get(name, _ABSENT)
                if v is not _ABSENT:
                    present += 1
                    tv = type(v)
                    if (tv is float or tv is int) and low <= v <= high:
                        num[num_off + j] = v
                        continue
                    if v is not None:
                        num[num_off + j] = self._number(name, v, row)
                        continue
                if required:
                    raise SchemaError(name, None, self._missing_rule(name), row=row)
                num[num_off + j] = _NAN
                missing += 1
                _bump(self.stats.missing, name)
            for j, name, known, slow in self._cat_codes if codes else self._cat:
                v = get(name, _ABSENT)
                if v is not _ABSENT:
                    present += 1
                    if type(v) is str:
                        value = known.get(v)
                        if value is not None:
                            cat[cat_off + j] = value
                            continue
                cat[cat_off + j] = slow(name, v, row)
                # slow returned, so v is missing or a valid string: count which
                if v is _ABSENT or v is None or v == "":
                    missing += 1
                    _bump(self.stats.missing, name)
                elif v not in known:
                    unknown += 1
        except SchemaError as exc:
            self.stats.refused += 1
            if self.strict and exc.rule.startswith("is required"):  # a misspelling explains the gap
                unknown_keys = self._unknown_keys(record)
                if unknown_keys:
                    raise self._unknown_field(record, unknown_keys, row) from None
            raise
        except TypeError:  # an unhashable value (a list, a dict) met the `in known` test
            self.stats.refused += 1
            raise self._unhashable(record, row) from None
        if size != present:
            if self.id_field is not None and self.id_field in record:
                present += 1
            if self.ignored_fields and size != present:
                present += sum(1 for key in self.ignored_fields if key in record)
            if size != present:
                if self.strict:
                    self.stats.refused += 1
                    raise self._unknown_field(record, self._unknown_keys(record), row)
                self._count_extras(record)
        if missing or unknown:
            self.stats.records_with_missing += missing > 0
            self.stats.records_with_unknown += unknown > 0
            return missing, unknown
        return CLEAN

    def _unknown_field(self, record: Mapping[Any, Any], keys: Sequence[Any], row: int | None) -> SchemaError:
        """The error for a field the model does not know, naming the closest known name.

        Called only on this error path: ``difflib`` never runs for a valid record.
        """
        key = keys[0]
        text = key if isinstance(key, str) else repr(key)
        by_lower = {name.lower(): name for name in self.field_names}
        close = by_lower.get(text.lower())
        if close is None:  # a shortened name ("recency" for "recency_days") before difflib's guess
            close = next((name for low, name in sorted(by_lower.items()) if low.startswith(text.lower())), None)
        if close is None:
            matches = difflib.get_close_matches(text.lower(), list(by_lower), n=1, cutoff=0.6)
            close = by_lower[matches[0]] if matches else None
        hint = f"did you mean {close!r}? " if close is not None else ""
        others = "" if len(keys) == 1 else f" ({len(keys)} unknown fields: {sorted(map(str, keys))[:8]})"
        rule = (
            f"is not an input of this model{others}; {hint}contract 'lenient' (--contract lenient, "
            "EDGESEG_CONTRACT=lenient) ignores unknown fields"
        )
        return SchemaError(text, record[key], rule, row=row)

    def _unknown_keys(self, record: Mapping[Any, Any]) -> list[Any]:
        known, ignored = self.field_names, self.ignored_fields
        return [k for k in record if k not in known and k != self.id_field and k not in ignored]

    def _missing_rule(self, name: str) -> str:
        """The rule of a required input that is missing, saying why it is required."""
        if self._required_by["lenient"][name]:
            return "is required"
        return "is required (training never had it missing; contract 'lenient' imputes it)"

    def _unhashable(self, record: Any, row: int | None) -> SchemaError:
        for name in self.cat_names:
            v = record.get(name)
            try:
                hash(v)
            except TypeError:
                return SchemaError(name, v, "must be a string", row=row)
        return SchemaError("<record>", record, "must be a mapping of field names to values")

    def _number(self, name: str, v: Any, row: int | None) -> float:
        """Slow path for a number field (not a plain in-range int/float); None is not passed."""
        if isinstance(v, (bool, np.bool_)):
            raise SchemaError(name, v, "must be a number, not a boolean", row=row)
        if not isinstance(v, (int, float, np.integer, np.floating)):
            raise SchemaError(name, v, "must be a number", row=row)
        try:
            x = float(v)
        except OverflowError:  # an int with hundreds of digits
            raise SchemaError(name, v, "must be within the float32 range", row=row) from None
        if not math.isfinite(x):
            raise SchemaError(name, v, "must be a finite number", row=row)
        if abs(x) > FLOAT32_MAX:
            raise SchemaError(name, v, "must be within the float32 range", row=row)
        low, high = self._ranges[name]
        if not low <= x <= high:
            self._out_of_range(name, v, 1, row)
        return x

    def _out_of_range(self, name: str, v: Any, count: int, row: int | None) -> None:
        low, high = (_shown(-FLOAT32_MAX if b is None else b) for b in self._shown_ranges[name])
        rule = f"must be within the training range [{low}, {high}]"
        if self.fail_out_of_range:
            raise SchemaError(name, v, rule, row=row)
        _bump(self.stats.out_of_range, name, count)
        if name not in self._warned_range:  # once per field: counted in stats, not spammed
            self._warned_range.add(name)
            logger.warning(
                "field %r: %r is outside the training range [%s, %s]; classified anyway "
                "(further occurrences are only counted in stats)",
                name,
                v,
                low,
                high,
            )

    def _string(self, name: str, v: Any, row: int | None) -> str:
        """Slow path for a string field: missing, unknown category, or invalid."""
        if v is _ABSENT or v is None or (type(v) is str and not v):
            if self._required[name]:
                raise SchemaError(name, None if v is _ABSENT else v, self._missing_rule(name), row=row)
            return self.missing_token
        if not isinstance(v, str):
            raise SchemaError(name, v, "must be a string", row=row)
        self._check_text(name, v, row)
        text = str(v)  # numpy.str_ -> str
        if text not in self._known[name]:
            _bump(self.stats.unknown_category, name)
        return text

    def _string_code(self, name: str, v: Any, row: int | None) -> float:
        """Slow path for a string field of the float-only graph: its code (-1 when unknown)."""
        return self._code_maps[name].get(self._string(name, v, row), -1.0)

    def strings_of(self, codes: Sequence[float], record: Mapping[str, Any]) -> list[str]:
        """The string fields of an already filled ``record`` as the raw graph sees them.

        What ``fill`` would have written without ``codes`` (drift counts strings): a code's
        vocabulary entry, else (-1: unseen or missing) the record's own value or the token.
        """
        out: list[str] = []
        for j, name, _, _ in self._cat_codes:
            code = int(codes[j])
            if code >= 0:
                out.append(self._vocabulary[name][code])
                continue
            v = record.get(name)
            out.append(self.missing_token if v is None or v == "" else str(v))
        return out

    def _check_text(self, name: str, v: str, row: int | None) -> None:
        max_length = self._max_length[name]
        if len(v) > max_length:
            raise SchemaError(name, v, f"must be at most {max_length} characters", row=row)
        if "\x00" in v:
            raise SchemaError(name, v, "must be valid text (no NUL characters)", row=row)
        if not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise SchemaError(name, v, "must be valid text (no lone surrogates)", row=row) from None

    def _count_extras(self, record: Mapping[Any, Any]) -> None:
        extra = self.stats.extra_fields
        for key in record:
            if key in self.field_names or key == self.id_field or key in self.ignored_fields:
                continue
            label = key if isinstance(key, str) else repr(key)
            if label in extra or len(extra) < _MAX_EXTRA_NAMES:
                _bump(extra, label)
            else:
                _bump(extra, "<other>")

    # ------------------------------------------------------------------ many records
    def fill_records(self, records: Sequence[Any], codes: bool = False) -> dict[str, np.ndarray]:
        """Validate a list of records into fresh ``[N, n]`` feeds (row = index in the list).

        ``codes=True``: one ``features`` matrix for the float-only graph (numbers, then codes).
        """
        n = len(records)
        n_num, n_cat = len(self.num_names), len(self.cat_names)
        if codes:
            width = n_num + n_cat
            features = np.empty(n * width, dtype=np.float32)
            fill = self.fill
            for i, record in enumerate(records):
                fill(record, features, features, i * width, i * width + n_num, i, True)
            return {"features": features.reshape(n, width)}
        num = np.empty(n * n_num, dtype=np.float32)
        cat: list[Any] = [None] * (n * n_cat)
        fill = self.fill
        for i, record in enumerate(records):
            fill(record, num, cat, i * n_num, i * n_cat, i)
        return self._feeds(num.reshape(n, n_num), cat, n)

    def _feeds(self, num: np.ndarray, cat: Any, n: int) -> dict[str, np.ndarray]:
        feeds: dict[str, np.ndarray] = {}
        if self.num_names:
            feeds["num"] = num
        if self.cat_names:
            feeds["cat"] = np.asarray(cat, dtype=object).reshape(n, len(self.cat_names))
        return feeds

    def fill_columns(self, columns: Mapping[str, Any], codes: bool = False) -> tuple[dict[str, np.ndarray], int]:
        """Validate a dict of columns (vectorised for numpy columns); returns (feeds, n_rows).

        ``codes=True``: one ``features`` matrix for the float-only graph; string columns go
        straight to codes (the validating binary search finds them), never to a string matrix.
        """
        arrays: dict[str, np.ndarray] = {}
        n_rows: int | None = None
        for name in (*self.num_names, *self.cat_names):
            if name not in columns or columns[name] is None:
                continue
            column = columns[name]
            if isinstance(column, np.ndarray):  # typed by its dtype: the vectorised paths
                arr = column
            elif isinstance(column, (str, bytes)) or not isinstance(column, Sequence):
                raise SchemaError(name, column, "must be a 1-D column (a list or numpy array)")
            else:  # a list: keep each value's own type, checked one by one like a record
                try:
                    arr = np.empty(len(column), dtype=object)
                    arr[:] = list(column)
                except (TypeError, ValueError):
                    raise SchemaError(name, column, "must be a 1-D column (a list or numpy array)") from None
            if arr.ndim != 1:
                raise SchemaError(name, f"array of shape {arr.shape}", "must be a 1-D column (a list or numpy array)")
            if n_rows is None:
                n_rows = len(arr)
            elif len(arr) != n_rows:
                raise SchemaError(name, len(arr), f"column length must be {n_rows}")
            arrays[name] = arr
        if n_rows is None:
            raise SchemaError("<columns>", sorted(map(str, columns)), "no column of the model")
        self.stats.records += n_rows
        if codes:
            return {"features": self._features(arrays, n_rows)}, self._count_column_extras(columns, n_rows)
        try:
            num = np.empty((n_rows, len(self.num_names)), dtype=np.float32)
            for j, name in enumerate(self.num_names):
                num[:, j] = self._number_column(name, arrays.get(name), n_rows)
            encoded = [self._string_column(n, arrays.get(n), n_rows) for n in self.cat_names]
            # numpy unicode columns stay unicode (onnxruntime reads them directly; making a
            # Python str per cell would cost more than the model); any object column -> object.
            if encoded and all(c.dtype.kind == "U" for c in encoded):
                width = max(c.dtype.itemsize // 4 for c in encoded)
                cat = np.empty((n_rows, len(encoded)), dtype=f"<U{max(width, 1)}")
            else:
                cat = np.empty((n_rows, len(encoded)), dtype=object)
            for j, column in enumerate(encoded):
                cat[:, j] = column
        except SchemaError:
            self.stats.refused += n_rows
            raise
        self._count_column_extras(columns, n_rows)
        feeds: dict[str, np.ndarray] = {}
        if self.num_names:
            feeds["num"] = num
        if self.cat_names:
            feeds["cat"] = cat
        return feeds, n_rows

    def _features(self, arrays: Mapping[str, np.ndarray], n_rows: int) -> np.ndarray:
        """Validated columns as the float-only graph's ``features`` ``[N, n_num + n_cat]``.

        Built column by column in a ``[n_cols, N]`` block (contiguous writes) and transposed
        once: cheaper than strided writes into ``[N, n_cols]``.
        """
        names = (*self.num_names, *self.cat_names)
        block = np.empty((len(names), n_rows), dtype=np.float32)
        try:
            for j, name in enumerate(self.num_names):
                block[j] = self._number_column(name, arrays.get(name), n_rows)
            for j, name in enumerate(self.cat_names, start=len(self.num_names)):
                block[j] = self._string_column(name, arrays.get(name), n_rows, codes=True)
        except SchemaError:
            self.stats.refused += n_rows
            raise
        return np.ascontiguousarray(block.T)

    def _count_column_extras(self, columns: Mapping[str, Any], n_rows: int) -> int:
        """Count the columns the model does not use (by name, bounded); returns ``n_rows``.

        Under the strict contract an unknown column is refused like an unknown field."""
        extras = [
            k for k in columns if k not in self.field_names and k != self.id_field and k not in self.ignored_fields
        ]
        if extras and self.strict:
            self.stats.refused += n_rows
            raise self._unknown_field(columns, extras, None)
        for key in extras:
            label = key if isinstance(key, str) else repr(key)
            if label in self.stats.extra_fields or len(self.stats.extra_fields) < _MAX_EXTRA_NAMES:
                _bump(self.stats.extra_fields, label, n_rows)
        return n_rows

    def _number_column(self, name: str, arr: np.ndarray | None, n: int) -> np.ndarray:
        if arr is None:
            if self._required[name]:
                raise SchemaError(name, None, self._missing_rule(name), row=0)
            return np.full(n, _NAN)
        kind = arr.dtype.kind
        if kind == "b":
            raise SchemaError(name, arr[0].item(), "must be a number, not a boolean", row=0)
        if kind not in "iuf":  # object (None for missing) or strings: per value
            out = np.empty(n)
            for i, v in enumerate(arr.tolist()):
                if v is None:
                    if self._required[name]:
                        raise SchemaError(name, None, self._missing_rule(name), row=i)
                    out[i] = _NAN
                elif type(v) is float or type(v) is int:
                    out[i] = self._number(name, v, i)
                else:
                    out[i] = self._number(name, v, i)
            return out
        x = arr.astype(np.float64, copy=False)
        low, high = self._ranges[name]
        if n and low <= x.min() and x.max() <= high:  # the common case in two passes (NaN fails it)
            return x
        bad = ~np.isfinite(x)
        if bad.any():  # NaN is a missing cell in a numpy column; ±inf is refused
            missing = np.isnan(x)
            infinite = bad & ~missing
            if infinite.any():
                i = int(np.argmax(infinite))
                raise SchemaError(name, arr[i].item(), "must be a finite number", row=i)
            if self._required[name]:
                raise SchemaError(name, None, self._missing_rule(name), row=int(np.argmax(missing)))
        big = np.abs(x) > FLOAT32_MAX
        if big.any():
            i = int(np.argmax(big))
            raise SchemaError(name, arr[i].item(), "must be within the float32 range", row=i)
        outside = (x < low) | (x > high)
        count = int(outside.sum())
        if count:
            i = int(np.argmax(outside))
            self._out_of_range(name, arr[i].item(), count, i)
        return x

    def _string_column(self, name: str, arr: np.ndarray | None, n: int, codes: bool = False) -> np.ndarray:
        """One validated string column: strings for the raw graph, or (``codes``) float codes."""
        if arr is None:
            if self._required[name]:
                raise SchemaError(name, None, self._missing_rule(name), row=0)
            token = self.missing_token
            return np.full(n, self._code_maps[name].get(token, -1.0) if codes else token)
        known = self._known[name]
        if arr.dtype.kind != "U":  # object column: per value, like single records
            values = arr.tolist()
            out = np.empty(n, dtype=object)
            for i, v in enumerate(values):
                if v in known and type(v) is str:
                    out[i] = v
                else:
                    try:
                        out[i] = self._string(name, v, i)
                    except TypeError:  # unhashable
                        raise SchemaError(name, v, "must be a string", row=i) from None
            if codes:
                lookup = self._code_maps[name].get
                return np.array([lookup(v, -1.0) for v in out.tolist()], dtype=np.float32)
            return out
        # A numpy unicode column: every value is a str. Known values are found with a
        # vectorised binary search over the sorted categories (which also gives their codes);
        # only the (few) other distinct values are checked one by one (empty -> missing,
        # length, text) and counted.
        ordered = self._known_sorted[name]
        if len(ordered):
            at = np.minimum(np.searchsorted(ordered, arr), len(ordered) - 1)
            ok = ordered[at] == arr
            if ok.all():
                return self._known_codes[name][at] if codes else arr
            positions = np.flatnonzero(~ok)
        else:
            positions = np.arange(n)
        uniques, first, inverse = np.unique(arr[positions], return_index=True, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(uniques))
        replaced = np.empty(len(uniques), dtype=object)
        unknown = 0
        for u, value in enumerate(uniques.tolist()):
            replaced[u] = self._string_column_value(name, value, int(positions[first[u]]))
            if value:
                unknown += int(counts[u])
        if unknown:
            _bump(self.stats.unknown_category, name, unknown)
        if codes:
            lookup = self._code_maps[name].get
            out_codes = self._known_codes[name][at] if len(ordered) else np.empty(n, dtype=np.float32)
            out_codes[positions] = np.array([lookup(r, -1.0) for r in replaced.tolist()], dtype=np.float32)[inverse]
            return out_codes
        out = arr.astype(f"<U{max(arr.dtype.itemsize // 4, len(self.missing_token))}")
        out[positions] = replaced[inverse]
        return out

    def _string_column_value(self, name: str, value: str, row: int) -> str:
        if not value:
            if self._required[name]:
                raise SchemaError(name, value, self._missing_rule(name), row=row)
            return self.missing_token
        self._check_text(name, value, row)
        return value
