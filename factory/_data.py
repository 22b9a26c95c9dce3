"""Read a customer table (CSV with a sniffed separator, or Parquet) and check its target."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from factory.errors import FactoryInputError

__all__ = ["MIN_ROWS_PER_CLASS", "check_target", "load_table"]

# Every class must reach the train, validation and test splits (stratified 60/20/20).
MIN_ROWS_PER_CLASS = 5
_CSV_SUFFIXES = {".csv", ".txt", ".tsv"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}


def _sniff_separator(path: Path) -> str:
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        sample = handle.read(64 * 1024)
    if not sample.strip():
        raise FactoryInputError(f"data file {str(path)!r} is empty")
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def load_table(path: str | Path, *, sep: str | None = None) -> pd.DataFrame:
    """Load CSV/TSV (separator sniffed unless given) or Parquet; errors name the file."""
    file = Path(path)
    if not file.exists():
        raise FactoryInputError(f"data file {str(file)!r} does not exist")
    if not file.is_file():
        raise FactoryInputError(f"data path {str(file)!r} is not a file")
    suffix = file.suffix.lower()
    try:
        if suffix in _PARQUET_SUFFIXES:
            frame = pd.read_parquet(file)
        elif suffix in _CSV_SUFFIXES:
            frame = pd.read_csv(file, sep=sep or _sniff_separator(file))
        else:
            raise FactoryInputError(
                f"data file {str(file)!r} has unknown format {suffix or '(no suffix)'!r}; "
                "use .csv, .tsv, .txt or .parquet"
            )
    except FactoryInputError:
        raise
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise FactoryInputError(f"cannot read {str(file)!r}: {exc}") from exc
    if frame.empty:
        raise FactoryInputError(f"data file {str(file)!r} has no rows")
    return frame


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
    if len(rare):
        name, count = rare.index[0], int(rare.iloc[0])
        raise FactoryInputError(
            f"class {name!r} of target {target!r} has {count} row{'s' if count != 1 else ''}; "
            f"each class needs at least {MIN_ROWS_PER_CLASS} (train, validation and test)"
        )
    return labels
