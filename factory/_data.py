"""Read a customer table as it comes, and check its target.

CSV/TSV/TXT (separator sniffed), Parquet, and Excel workbooks (``.xlsx``/``.xlsm`` through
openpyxl, ``.xls`` through xlrd). What a new user's file brings, read without a step by hand,
each with a note the build shows and the manifest keeps (``data.notes``):

* a CSV that is not UTF-8 (a Windows export: ``État`` as byte 0xC9) is read as cp1252, or
  latin-1 when a byte is undefined in cp1252; a UTF-16 file (Excel's "Unicode text") by its BOM;
* a workbook with several sheets (a data dictionary beside the data) is read from its largest
  sheet unless ``sheet`` names one;
* a title or comment block above the header (lines narrower than the table) is skipped;
* a first column with no header holding the row numbers 0..n-1 or 1..n is the index pandas
  wrote with ``to_csv``: read as the file's index, not as an input. Any other identifier is
  still refused by the schema (docs/DESIGN.md: only true identifiers are refused).

Why by hand: pandas reads one encoding and one sheet it is told; choosing them is ours.
"""

from __future__ import annotations

import codecs
import csv
import itertools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from factory.errors import FactoryInputError

__all__ = ["MIN_ROWS_PER_CLASS", "ReadTable", "check_target", "datetimes_as_text", "is_quantity", "read_table"]

# Every class must reach the train, validation and test splits (stratified 60/20/20).
MIN_ROWS_PER_CLASS = 5
# A numeric target with more distinct values than this, some too rare to split, is a quantity.
MAX_NUMERIC_CLASSES = 20
_CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}
_EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xls"}
_SNIFF_BYTES = 64 * 1024
_PREAMBLE_PROBE_LINES = 200
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")


@dataclass(frozen=True)
class ReadTable:
    """A table as read, and how it was read where that was not the plain default."""

    frame: pd.DataFrame
    notes: tuple[str, ...] = ()


def _text_encoding(path: Path) -> tuple[str, str | None]:
    """The file's text encoding and, when it is not UTF-8, a note saying why."""
    with open(path, "rb") as handle:
        head = handle.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16", "read as UTF-16 text (its byte-order mark says so)"
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset = 0
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                bad = chunk[exc.start]
                handle.seek(0)
                used = set(handle.read())
                encoding = "latin-1" if used & _CP1252_UNDEFINED else "cp1252"
                return encoding, (
                    f"read as {encoding} text: not UTF-8 (byte 0x{bad:02x} at offset {offset + exc.start})"
                )
            offset += len(chunk)
    return "utf-8-sig", None


def _sniff_separator(path: Path, encoding: str) -> str:
    with open(path, newline="", encoding=encoding, errors="replace") as handle:
        sample = handle.read(_SNIFF_BYTES)
    if not sample.strip():
        raise FactoryInputError(f"data file {str(path)!r} is empty")
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _preamble(path: Path, encoding: str, sep: str) -> int:
    """How many lines come before the header: a title or comment block above the table.

    The table's width is the commonest field count of the first lines; leading lines with fewer
    fields are skipped, and the first line as wide as the table is the header. A header wider
    than its rows stays (nothing after it is skipped)."""
    with open(path, newline="", encoding=encoding, errors="replace") as handle:
        lines = list(itertools.islice(handle, _PREAMBLE_PROBE_LINES))
    counts = [len(next(csv.reader([line], delimiter=sep), [])) if line.strip() else 0 for line in lines]
    widths = Counter(c for c in counts if c)
    if not widths:
        return 0
    width = widths.most_common(1)[0][0]
    return next((i for i, count in enumerate(counts) if count >= width), 0) if width > 1 else 0


def _read_csv(path: Path, sep: str | None) -> ReadTable:
    encoding, note = _text_encoding(path)
    sep = sep or _sniff_separator(path, encoding)
    skip = _preamble(path, encoding, sep)
    notes: tuple[str, ...] = (note,) if note else ()
    if skip:
        notes += (f"{skip} line{'s' if skip != 1 else ''} above the header skipped (a title or comment block)",)
    frame = pd.read_csv(path, sep=sep, encoding=encoding, skiprows=skip)
    return ReadTable(frame, notes)


def _read_excel(path: Path, sheet: str | None) -> ReadTable:
    try:
        sheets = pd.read_excel(path, sheet_name=None)
    except Exception as exc:  # noqa: BLE001 - openpyxl/xlrd raise their own types (BadZipFile, XLRDError …)
        raise FactoryInputError(f"cannot read {str(path)!r}: {type(exc).__name__}: {exc}") from exc
    names = list(sheets)
    if sheet is not None:
        if sheet not in sheets:
            raise FactoryInputError(
                f"workbook {str(path)!r} has no sheet {sheet!r}; its sheets are: {', '.join(names)}"
            )
        return ReadTable(sheets[sheet])
    if len(sheets) == 1:
        return ReadTable(sheets[names[0]])
    largest = max(names, key=lambda name: sheets[name].size)
    sizes = ", ".join(f"{name!r} ({len(sheets[name])} rows)" for name in names)
    return ReadTable(sheets[largest], (f"workbook sheets {sizes}: read {largest!r}, the largest (--sheet to choose)",))


def _without_saved_index(table: ReadTable) -> ReadTable:
    """The table without a first column that is the index pandas wrote (see the docstring)."""
    frame = table.frame
    if frame.shape[1] < 2 or not str(frame.columns[0]).startswith("Unnamed: 0"):
        return table
    first = frame.iloc[:, 0]
    if not pd.api.types.is_integer_dtype(first):
        return table
    values = first.to_numpy()
    for start in (0, 1):
        if np.array_equal(values, np.arange(start, start + len(values))):
            note = (
                f"the first column has no header and holds the row numbers {start}..{start + len(values) - 1} "
                "(an index saved with the file): read as the index, not an input"
            )
            return ReadTable(frame.iloc[:, 1:], (*table.notes, note))
    return table


def datetimes_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its datetime columns (a workbook's or Parquet's dates) as the text a till
    sends: ``2022-05-01`` when every value is at midnight, else ``2022-05-01 13:05:00``.

    Read as Timestamps they would print with a time of day, the schema would detect that format,
    and a till sending the plain date would be refused. Time zones are dropped (UTC)."""
    stamps = [name for name in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[name])]
    if not stamps:
        return frame
    out = frame.copy()
    for name in stamps:
        column = out[name]
        if getattr(column.dt, "tz", None) is not None:
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        present = column.dropna()
        fmt = "%Y-%m-%d" if (present == present.dt.normalize()).all() else "%Y-%m-%d %H:%M:%S"
        out[name] = column.dt.strftime(fmt).astype(object).where(column.notna(), np.nan)
    return out


def read_table(path: str | Path, *, sep: str | None = None, sheet: str | None = None) -> ReadTable:
    """Load CSV/TSV/TXT, Parquet or an Excel workbook; errors name the file (module docstring)."""
    file = Path(path)
    if not file.exists():
        raise FactoryInputError(f"data file {str(file)!r} does not exist")
    if not file.is_file():
        raise FactoryInputError(f"data path {str(file)!r} is not a file")
    suffix = file.suffix.lower()
    if sheet is not None and suffix not in _EXCEL_SUFFIXES:
        raise FactoryInputError(f"--sheet {sheet!r} names a workbook sheet, but {str(file)!r} is not an Excel file")
    try:
        if suffix in _PARQUET_SUFFIXES:
            table = ReadTable(pd.read_parquet(file))
        elif suffix in _CSV_SUFFIXES:
            table = _read_csv(file, sep)
        elif suffix in _EXCEL_SUFFIXES:
            table = _read_excel(file, sheet)
        else:
            raise FactoryInputError(
                f"data file {str(file)!r} has unknown format {suffix or '(no suffix)'!r}; "
                "use .csv, .tsv, .txt, .parquet, .xlsx or .xls"
            )
    except FactoryInputError:
        raise
    except (ValueError, OSError, ImportError, pd.errors.ParserError) as exc:
        raise FactoryInputError(f"cannot read {str(file)!r}: {exc}") from exc
    if table.frame.empty:
        raise FactoryInputError(f"data file {str(file)!r} has no rows")
    table = _without_saved_index(table)
    return ReadTable(datetimes_as_text(table.frame), table.notes)


def is_quantity(target: pd.Series) -> bool:
    """A numeric target with more than ``MAX_NUMERIC_CLASSES`` values: an amount, not segments."""
    return bool(pd.api.types.is_numeric_dtype(target)) and target.nunique() > MAX_NUMERIC_CLASSES


def check_target(frame: pd.DataFrame, target: str) -> pd.Series:
    """The target column as strings; refuses an absent, one-class or too-rare-class target."""
    if target not in frame.columns:
        raise FactoryInputError(
            f"target column {target!r} is not in the data; columns are: {', '.join(map(str, frame.columns))}"
        )
    labels = frame[target]
    if labels.isna().any():
        raise FactoryInputError(
            f"target column {target!r} is empty in {int(labels.isna().sum())} rows; drop or label them first"
        )
    labels = labels.astype(str)
    counts = labels.value_counts()
    if len(counts) < 2:
        raise FactoryInputError(f"target column {target!r} has only one class ({counts.index[0]!r}); need at least 2")
    rare = counts[counts < MIN_ROWS_PER_CLASS]
    if len(rare) and is_quantity(frame[target]):
        raise FactoryInputError(
            f"target column {target!r} holds {len(counts)} different numbers: a quantity, not classes. "
            "edgeseg classifies customers into segments: cut it into tiers first (e.g. pandas.qcut), "
            "or let the factory find segments (--labels clusters)"
        )
    if len(rare):
        name, count = rare.index[0], int(rare.iloc[0])
        raise FactoryInputError(
            f"class {name!r} of target {target!r} has {count} row{'s' if count != 1 else ''}; "
            f"each class needs at least {MIN_ROWS_PER_CLASS} (train, validation and test)"
        )
    return labels
