"""How one column of a customer table is read: the rules behind ``factory._schema.infer_schema``.

Tables as they come (docs/DESIGN.md §2): a charges column exported with a few ``" "`` cells, a
``"$1,234.50"`` amount, a ``"12 %"`` rate, a ``dd-mm-yyyy`` sign-up date, ``"Yes"/"No"`` flags.
Each rule here looks at the column's values only (never the target) and says what the column
*is*, with a reason a person can check:

* blank or whitespace-only cells are missing values, whatever the column;
* text that is a number once currency signs, thousands separators, a percent sign and spaces
  are taken off (in at least ``NUMERIC_TEXT_SHARE`` of the non-blank cells) is a number; the
  cells that do not parse become missing (and are counted);
* text in one common date / date-time format (``DATE_FORMATS``, at least ``DATE_SHARE`` of the
  cells) is a date: the device derives numbers from it (``edge_runtime.dates``);
* two values that read as yes/no, true/false, y/n or 0/1 are a boolean;
* near-unique text (``ID_UNIQUE_SHARE`` of the rows distinct) is an identifier; an integer
  column is one only when every value is distinct *and* the values are a run of consecutive
  numbers or the name says id/key/number — a float amount with many distinct values (a total
  charge) is a measurement, not an id.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "DATE_FORMATS",
    "blank_to_missing",
    "detect_date_format",
    "is_boolean",
    "looks_like_id_name",
    "parse_number_text",
    "parse_numbers",
]

NUMERIC_TEXT_SHARE = 0.95  # share of non-blank cells that must parse as numbers
DATE_SHARE = 0.95  # share of non-blank cells that must parse in one date format
ID_UNIQUE_SHARE = 0.95  # distinct / non-missing at or above this: near-unique
DATE_SAMPLE = 500  # distinct values tried per format when detecting

# Tried in this order; with day and month both <= 12 in every cell, the first that parses
# every value wins (day-first before month-first: the tables are European), and the
# reason says the column was ambiguous.
DATE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y/%m/%d",
    "%d-%m-%Y",
    "%d/%m/%Y",
    "%d.%m.%Y",
    "%m/%d/%Y",
    "%m-%d-%Y",
    "%d-%m-%Y %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%d.%m.%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%d-%m-%Y %H:%M",
    "%d/%m/%Y %H:%M",
    "%d.%m.%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%d %b %Y",
    "%d %B %Y",
    "%d-%b-%Y",
    "%b %d, %Y",
    "%B %d, %Y",
    "%d-%b-%y",  # 4-Sep-12 (the marketing-campaign table's own export)
    "%d-%m-%y",
    "%d/%m/%y",
    "%m/%d/%y",
    "%d.%m.%y",
    "%Y%m%d",
)

_CURRENCY = "$€£¥₹₽₩₺₪฿"
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_GROUPED = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")  # 1,234,567.89
_ID_NAME = re.compile(r"(^|[_\s.-])(id|key|uuid|guid|code|number|no|nr|num)$|^id|id$", re.IGNORECASE)
_BOOLEAN_PAIRS = (
    frozenset({"yes", "no"}),
    frozenset({"true", "false"}),
    frozenset({"y", "n"}),
    frozenset({"t", "f"}),
    frozenset({"0", "1"}),
    frozenset({"0.0", "1.0"}),
)


def blank_to_missing(column: pd.Series) -> pd.Series:
    """Object values with empty / whitespace-only strings (and pandas NA) as NaN."""
    values = column.astype(object)
    text = values.map(lambda v: v.strip() if isinstance(v, str) else v)
    blank = text.map(lambda v: isinstance(v, str) and v == "")
    return values.where(~(blank | column.isna()), np.nan)


def parse_number_text(value: object) -> float | None:
    """The number in a cell like ``"$1,234.50"``, ``"12 %"``, ``" 7 "``; None when not one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip().replace("\u00a0", "").replace(" ", "")
    negative = text.startswith("(") and text.endswith(")")  # accounting: (12.50) is -12.50
    if negative:
        text = text[1:-1]
    text = text.strip(_CURRENCY).rstrip("%").strip(_CURRENCY)
    if len(text) > 2 and text[0] in "+-" and text[1] in _CURRENCY:  # -$5.00
        text = text[0] + text[2:]
    if _GROUPED.match(text):
        text = text.replace(",", "")
    if not _NUMBER.match(text):
        return None
    number = float(text)
    return -number if negative else number


def parse_numbers(values: pd.Series) -> pd.Series:
    """Every cell through :func:`parse_number_text`: float64, NaN where missing or unreadable."""
    return values.map(parse_number_text).astype("float64")


def _unit_kinds(values: Iterable[str]) -> list[str]:
    kinds: set[str] = set()
    for v in values:
        if any(c in v for c in _CURRENCY):
            kinds.add("currency signs")
        if "%" in v:
            kinds.add("percent signs")
        if _GROUPED.match(v.strip().strip(_CURRENCY)):
            kinds.add("thousands separators")
    return sorted(kinds)


def numeric_text_report(text: pd.Series) -> tuple[pd.Series, str] | None:
    """(parsed numbers, reason) when a text column holds numbers; None otherwise.

    ``text`` has blanks already as NaN. The reason names what was stripped and how many
    non-blank cells did not parse (they become missing).
    """
    present = text.dropna()
    if present.empty:
        return None
    numbers = parse_numbers(text)
    parsed = numbers.notna() & text.notna()
    share = float(parsed.sum()) / len(present)
    if share < NUMERIC_TEXT_SHARE:
        return None
    units = _unit_kinds(present.astype(str).unique()[:2000].tolist())
    bad = len(present) - int(parsed.sum())
    parts = ["text holding numbers"]
    if units:
        parts.append(f"({', '.join(units)} removed)")
    if bad:
        parts.append(f"; {bad} unreadable cell{'s' if bad != 1 else ''} read as missing")
    return numbers, " ".join(parts).replace(" ;", ";")


def _parses(values: Sequence[str], fmt: str) -> int:
    ok = 0
    for v in values:
        try:
            dt.datetime.strptime(v, fmt)
        except ValueError:
            continue
        ok += 1
    return ok


def detect_date_format(values: Sequence[str], *, share: float = DATE_SHARE) -> tuple[str, bool] | None:
    """(format, ambiguous) of the first ``DATE_FORMATS`` entry that reads ``share`` of the
    distinct stripped values; None when none does. ``ambiguous``: another format of the list
    reads them as well (day and month both <= 12 everywhere)."""
    sample = [v.strip() for v in values if v.strip()][:DATE_SAMPLE]
    if not sample:
        return None
    if all(re.fullmatch(r"[+-]?\d+(\.\d+)?", v) for v in sample) and not all(len(v) == 8 for v in sample):
        return None  # plain numbers are numbers (only 8-digit runs may be %Y%m%d)
    needed = max(1, int(np.ceil(share * len(sample))))
    found = [fmt for fmt in DATE_FORMATS if _parses(sample, fmt) >= needed]
    if not found:
        return None
    first = found[0]
    ambiguous = any(_day_month_swapped(first, other) for other in found[1:])
    return first, ambiguous


def _day_month_swapped(a: str, b: str) -> bool:
    return a.replace("%d", "@").replace("%m", "%d").replace("@", "%m") == b


def is_boolean(values: Sequence[object]) -> bool:
    """Two distinct values (or one) that read as a yes/no pair, case-insensitive."""
    distinct = {str(v).strip().lower() for v in values}
    return 1 <= len(distinct) <= 2 and any(distinct <= pair for pair in _BOOLEAN_PAIRS)


def looks_like_id_name(name: str) -> bool:
    """``customer_id``, ``ID``, ``CustomerKey``, ``account number``, ``Id``…"""
    return bool(_ID_NAME.search(name.strip()))


def integer_identifier(name: str, numbers: pd.Series) -> str | None:
    """Why an integer column is an identifier (every value distinct, consecutive or named
    like one); None when it is a number with a meaning."""
    present = numbers.dropna()
    if len(present) < 20 or present.nunique() != len(present):
        return None
    if not np.all(np.floor(present) == present):
        return None  # decimals: an amount or a rate, not a key
    span = float(present.max() - present.min()) + 1
    if span <= 1.05 * len(present):
        return f"every value distinct and consecutive ({present.min():g}..{present.max():g}): a row or customer number"
    if looks_like_id_name(name):
        return "every value a distinct integer and the name says it is an id"
    return None
