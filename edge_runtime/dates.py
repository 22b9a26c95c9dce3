"""Dates as the device receives them: a date string in, the model's numeric inputs out.

A customer table's date column (a sign-up date, a last-visit time) is not a model input as
text: 582 distinct sign-up days are 582 categories that tell a tree nothing about *how long
ago*. The factory turns it into numbers instead (``manifest.dates``, docs/ARTIFACT.md) and the
device derives the same numbers from the string the till sends, with this module, so the graph
only ever sees numbers and the factory's training rows and the device's rows cannot disagree
(the factory derives its training columns with these very functions):

* ``days_before``: days from the date to the build's ``reference`` (fractional for a
  date-time; negative for a date after it);
* ``month``: 1-12; ``weekday``: 0 (Monday) - 6.

A missing date (absent, ``None`` or blank) makes all three missing (NaN); a string that does
not match the column's ``format`` is refused with a ``SchemaError`` naming field, value and
format (a till sending another format is a bug to see, not a value to guess).

Standard library only (``datetime.strptime``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from edge_runtime.exceptions import SchemaError

if TYPE_CHECKING:
    from edge_runtime.artifact import Manifest

__all__ = ["DATE_FEATURES", "DateColumn", "DateDeriver", "derive", "parse_reference"]

DATE_FEATURES = ("days_before", "month", "weekday")
_NAN = float("nan")
_SECONDS_PER_DAY = 86400.0


def parse_reference(text: str) -> dt.datetime:
    """The manifest's reference moment (ISO ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS``)."""
    return dt.datetime.fromisoformat(text)


def derive(value: Any, fmt: str, reference: dt.datetime, *, field: str = "<date>") -> tuple[float, float, float]:
    """``(days_before, month, weekday)`` of one date string; NaNs when the value is missing.

    ``value`` may be a ``str`` (stripped first), ``None``, a NaN float (pandas' missing) or a
    ``datetime``/``date`` already parsed; anything else, or a string not in ``fmt``, raises
    ``SchemaError(field, value, rule)``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (_NAN, _NAN, _NAN)
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return (_NAN, _NAN, _NAN)
        try:
            moment = dt.datetime.strptime(text, fmt)
        except ValueError:
            raise SchemaError(field, value, f"must be a date in the format {fmt!r}") from None
    else:
        raise SchemaError(field, value, f"must be a date string in the format {fmt!r}")
    if moment.tzinfo is not None:
        moment = moment.replace(tzinfo=None)
    days = (reference - moment).total_seconds() / _SECONDS_PER_DAY
    return (days, float(moment.month), float(moment.weekday()))


class DateColumn:
    """One date field of the manifest: its format, reference moment and derived input names."""

    __slots__ = ("name", "format", "reference", "outputs")

    def __init__(self, name: str, fmt: str, reference: str | dt.datetime, outputs: Mapping[str, str]) -> None:
        unknown = sorted(set(outputs) - set(DATE_FEATURES))
        if unknown:
            raise ValueError(f"date column {name!r}: unknown derived features {unknown}; known: {DATE_FEATURES}")
        self.name = name
        self.format = fmt
        self.reference = parse_reference(reference) if isinstance(reference, str) else reference
        # (position in derive()'s tuple, input name) for each derived input the model uses
        self.outputs: tuple[tuple[int, str], ...] = tuple(
            (DATE_FEATURES.index(kind), target) for kind, target in outputs.items()
        )

    def values(self, value: Any) -> tuple[float, float, float]:
        return derive(value, self.format, self.reference, field=self.name)


class DateDeriver:
    """Replaces each date field of a record (or column) by the numeric inputs derived from it.

    Only a record that *has* the date field is changed (the date field is then removed, so it
    is not counted as an extra field); one that already carries the derived numbers, or
    neither, passes unchanged (missing derived inputs are missing, as for any number).
    """

    __slots__ = ("columns",)

    def __init__(self, columns: Sequence[DateColumn]) -> None:
        self.columns = tuple(columns)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> DateDeriver | None:
        """The deriver of a manifest's ``dates`` section; None when the model has no date input."""
        if not manifest.dates:
            return None
        return cls([DateColumn(d.name, d.format, d.reference, d.outputs) for d in manifest.dates])

    def record(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """The record with its date fields replaced by their derived numbers."""
        if not isinstance(record, Mapping):  # the validator names that problem
            return record
        present = [c for c in self.columns if c.name in record]
        if not present:
            return record
        out = dict(record)
        for column in present:
            values = column.values(out.pop(column.name))
            for position, target in column.outputs:
                value = values[position]
                out[target] = None if math.isnan(value) else value
        return out

    def records(self, records: Iterable[Any]) -> list[Any]:
        """Each record through :meth:`record` (a non-mapping passes unchanged: the validator refuses it)."""
        return [self.record(r) for r in records]

    def column_values(self, column: DateColumn, values: Sequence[Any]) -> dict[str, list[float]]:
        """Derived columns (input name -> float values, NaN = missing) of one date column."""
        derived: dict[str, list[float]] = {target: [] for _, target in column.outputs}
        for row, value in enumerate(values):
            try:
                triple = column.values(value)
            except SchemaError as exc:
                raise SchemaError(column.name, value, exc.rule, row=row) from None
            for position, target in column.outputs:
                derived[target].append(triple[position])
        return derived

    def columns_of(self, columns: Mapping[str, Any]) -> Mapping[str, Any]:
        """A dict of columns with each date column replaced by its derived float columns."""
        present = [c for c in self.columns if c.name in columns and columns[c.name] is not None]
        if not present:
            return columns
        out = dict(columns)
        for column in present:
            raw = out.pop(column.name)
            values = raw.tolist() if hasattr(raw, "tolist") else list(raw)
            out.update(self.column_values(column, values))
        return out
