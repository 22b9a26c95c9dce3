"""Read a raw transaction log and clean it into the canonical frame, counting every rule.

The canonical frame has one row per kept log line and these columns:

========== ============== ====================================================================
column     dtype          meaning
========== ============== ====================================================================
customer_id str           the customer (``17850.0`` in a float column becomes ``"17850"``)
timestamp  datetime64     when the line was booked (naive, as in the source)
quantity   float64        items; negative on returns
unit_price float64        > 0 (rows with non-positive prices are dropped)
amount     float64        ``quantity * unit_price``: signed money, negative on returns
is_return  bool           a cancellation (invoice prefix) or a negative quantity
invoice_id str            only if the log has invoice ids
product    str            only if the log has products
category   str            only if the log has, or lets us derive, a category
country    str            only if the log has countries
========== ============== ====================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from factory.errors import FactoryInputError

from ._columns import (
    AMOUNT,
    CATEGORY,
    COUNTRY,
    CUSTOMER_ID,
    INVOICE_ID,
    IS_RETURN,
    PRODUCT,
    QUANTITY,
    REQUIRED_CANONICAL,
    TIMESTAMP,
    UNIT_PRICE,
    LogColumns,
)
from ._report import CleaningReport

_PARQUET = (".parquet", ".pq")
_CSV = (".csv",)
_TSV = (".tsv",)
# CDNOW's master file (and similar academic logs) are space-aligned text with a header line.
_WHITESPACE = (".txt", ".dat")
SUPPORTED_SUFFIXES = _PARQUET + _CSV + _TSV + _WHITESPACE

#: Category given to product codes outside the numeric families (postage, discounts, fees…).
NON_MERCHANDISE = "non-merchandise"

# String-valued roles are read as text so ids keep their leading zeros ("00001" in CDNOW) and
# timestamps like 19970101 are not turned into integers first.
_TEXT_ROLES = (CUSTOMER_ID, TIMESTAMP, INVOICE_ID, PRODUCT, CATEGORY, COUNTRY)


def stock_code_family(codes: pd.Series) -> pd.Series:
    """Coarse product category from an Online Retail ``StockCode``: its two-digit prefix.

    Online Retail has no category column, but docs/DESIGN.md asks for category breadth and
    cross-category affinity. Its stock codes are five digits plus an optional variant letter
    (``85123A``), allocated in numeric blocks, so products catalogued together share a prefix.
    The first two digits are therefore a proxy for a product line: 32 families on the bundled
    data (``"22"`` alone holds about 40 % of lines). It is not a merchandising taxonomy; it is
    coarse on purpose, so that category breadth measures something other than product breadth.
    Codes that are not five digits (``POST``, ``DOT``, ``M``, ``D``, ``C2``, ``BANK CHARGES``,
    ``gift_0001_20`` …) are postage, discounts, fees and vouchers, and share the family
    ``"non-merchandise"``.

    >>> stock_code_family(pd.Series(["85123A", "22423", "POST"])).tolist()
    ['85', '22', 'non-merchandise']
    """
    family = codes.astype("str").str.extract(r"^(\d{2})\d{3}(?:[A-Za-z]*)$", expand=False)
    return family.fillna(NON_MERCHANDISE).astype("str")


def _reader_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    for kind, suffixes in (
        ("parquet", _PARQUET),
        ("csv", _CSV),
        ("tsv", _TSV),
        ("whitespace", _WHITESPACE),
    ):
        if suffix in suffixes:
            return kind
    raise FactoryInputError(
        f"transaction log {path} has an unsupported suffix {path.suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
    )


def _text_options(kind: str) -> dict[str, object]:
    if kind == "csv":
        return {"sep": ","}
    if kind == "tsv":
        return {"sep": "\t"}
    return {"sep": r"\s+"}


def _header(path: Path, kind: str) -> list[str]:
    if kind == "parquet":
        import pyarrow.parquet as pq  # only needed here; keeps the import cheap elsewhere

        return list(pq.read_schema(path).names)
    return [str(c) for c in pd.read_csv(path, nrows=0, **_text_options(kind)).columns]


def _choose_columns(header: Sequence[str]) -> LogColumns:
    """Without an explicit mapping, the first preset whose columns are all present wins.

    Online Retail is tried last so that, when nothing fits, its (the default data's) missing
    column is the one named in the error.
    """
    for preset in (LogColumns.cdnow(), LogColumns.online_retail()):
        if set(preset.mapping().values()) <= set(header):
            return preset
    return LogColumns.online_retail()


def _check_columns(path: Path, header: Sequence[str], columns: LogColumns) -> None:
    present = set(header)
    for role, raw in columns.mapping().items():
        if raw not in present:
            raise FactoryInputError(
                f"transaction log {path} has no column {raw!r} (needed as {role}); "
                f"columns are: {', '.join(map(str, header))}"
            )


def _read(path: Path, kind: str, columns: LogColumns) -> pd.DataFrame:
    mapping = columns.mapping()
    wanted = list(dict.fromkeys(mapping.values()))
    if kind == "parquet":
        return pd.read_parquet(path, columns=wanted)
    text = {mapping[r]: "str" for r in _TEXT_ROLES if r in mapping}
    return pd.read_csv(path, usecols=wanted, dtype=text, **_text_options(kind))


def _customer_ids(raw: pd.Series) -> pd.Series:
    """Customer ids as strings; missing stays missing.

    Online Retail stores ids as floats (``17850.0``, NaN for guests); a float id with no
    fraction is written as the integer it is, otherwise ``"17850.0"`` and ``"17850"`` would
    be two customers depending on the file format.
    """
    if pd.api.types.is_float_dtype(raw.dtype):
        values = raw.to_numpy(dtype="float64")
        finite = values[np.isfinite(values)]
        if np.array_equal(finite, np.round(finite)):
            raw = raw.astype("Int64")
    ids = raw.astype("str").str.strip()
    ids = ids.str.replace(r"^(\d+)\.0+$", r"\1", regex=True)
    return ids.where(raw.notna() & (ids != ""))


def _timestamps(raw: pd.Series, fmt: str | None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        if getattr(raw.dtype, "tz", None) is not None:
            raw = raw.dt.tz_localize(None)
        return raw
    return pd.to_datetime(raw.astype("str"), format=fmt, errors="coerce")


def load_transactions(
    path: str | Path,
    columns: LogColumns | None = None,
    *,
    drop_duplicates: bool = False,
) -> tuple[pd.DataFrame, CleaningReport]:
    """Read a transaction log (Parquet, CSV, TSV or whitespace text) and clean it.

    Cleaning rules, applied in this order and each counted in the returned report:

    1. a row without a customer id is dropped (it cannot feed any customer's features);
    2. a row with a missing or unparseable timestamp is dropped;
    3. a row with a missing, non-numeric or zero quantity is dropped;
    4. a row with a missing, zero or negative unit price is dropped (free samples, bad-debt
       adjustments and write-offs are not customer spend);
    5. cancellations (invoice id with ``columns.cancel_prefix``) and negative quantities are
       **kept**, flagged ``is_return``, and subtract from spend (a cancellation's amount is
       ``-|quantity × unit price|`` even when its quantity is positive);
    6. exact duplicate rows are counted and, by default, **kept**: a line-item log without a
       line number cannot tell a double export from a customer scanning the same item twice
       in one basket, and dropping real purchases is the worse error for spend features.
       Pass ``drop_duplicates=True`` to drop them instead.

    Parameters
    ----------
    path:
        The log. ``.parquet``/``.pq``, ``.csv``, ``.tsv``, or ``.txt``/``.dat`` (whitespace
        separated with a header line, as CDNOW's master file).
    columns:
        Which raw column plays which role. ``None`` picks the first preset whose columns are
        all present (CDNOW, then Online Retail).
    drop_duplicates:
        Drop exact duplicate rows instead of only counting them.

    Returns
    -------
    (log, report):
        The canonical frame (see the module docstring) and a :class:`CleaningReport`.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Unsupported suffix, or a mapped column is absent (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"transaction log {path} does not exist")
    kind = _reader_kind(path)
    header = _header(path, kind)
    if columns is None:
        columns = _choose_columns(header)
    _check_columns(path, header, columns)
    raw = _read(path, kind, columns)
    return _clean(raw, columns, source=str(path), drop_duplicates=drop_duplicates)


def _clean(
    raw: pd.DataFrame, columns: LogColumns, *, source: str, drop_duplicates: bool
) -> tuple[pd.DataFrame, CleaningReport]:
    """Apply the cleaning rules of :func:`load_transactions` to an already-read frame."""
    customer = _customer_ids(raw[columns.customer_id])
    timestamp = _timestamps(raw[columns.timestamp], columns.timestamp_format)
    quantity = pd.to_numeric(raw[columns.quantity], errors="coerce").astype("float64")
    if columns.unit_price is not None:
        unit_price = pd.to_numeric(raw[columns.unit_price], errors="coerce").astype("float64")
        amount = quantity * unit_price
    else:
        amount = pd.to_numeric(raw[columns.amount], errors="coerce").astype("float64")
        with np.errstate(divide="ignore", invalid="ignore"):
            unit_price = amount / quantity

    # Sequential rules: each count is taken on what the previous rules kept.
    keep = pd.Series(True, index=raw.index)
    dropped: dict[str, int] = {}
    for name, ok in (
        ("missing_customer", customer.notna()),
        ("bad_timestamp", timestamp.notna()),
        ("bad_quantity", quantity.notna() & (quantity != 0)),
        ("nonpositive_price", np.isfinite(unit_price) & (unit_price > 0)),
    ):
        dropped[name] = int((keep & ~ok).sum())
        keep &= ok

    log = pd.DataFrame(
        {
            CUSTOMER_ID: customer,
            TIMESTAMP: timestamp,
            QUANTITY: quantity,
            UNIT_PRICE: unit_price,
            AMOUNT: amount,
        }
    )
    is_return = quantity < 0
    cancelled = pd.Series(False, index=raw.index)
    if columns.invoice_id is not None:
        log[INVOICE_ID] = raw[columns.invoice_id].astype("str").str.strip()
        if columns.cancel_prefix:
            cancelled = log[INVOICE_ID].str.startswith(columns.cancel_prefix)
            is_return |= cancelled
            # A cancellation subtracts whatever the sign of its quantity (the till's rule too:
            # edge_runtime.customer_state); a positive one would otherwise raise net spend.
            log[AMOUNT] = log[AMOUNT].where(~cancelled, -log[AMOUNT].abs())
    if columns.product is not None:
        log[PRODUCT] = raw[columns.product].astype("str").str.strip()
    if columns.category is not None:
        log[CATEGORY] = raw[columns.category].astype("str").str.strip()
    elif columns.category_from_stock_code:
        log[CATEGORY] = stock_code_family(log[PRODUCT])
    if columns.country is not None:
        log[COUNTRY] = raw[columns.country].astype("str").str.strip()
    log[IS_RETURN] = is_return.astype("bool")

    log = log.loc[keep]
    cancelled = cancelled.loc[keep]
    duplicated = log.duplicated()
    if drop_duplicates:
        log = log.loc[~duplicated]
        cancelled = cancelled.loc[~duplicated]
    log = log.reset_index(drop=True)

    span = (log[TIMESTAMP].min(), log[TIMESTAMP].max()) if len(log) else (None, None)
    report = CleaningReport(
        source=source,
        rows_read=len(raw),
        dropped_missing_customer=dropped["missing_customer"],
        dropped_bad_timestamp=dropped["bad_timestamp"],
        dropped_bad_quantity=dropped["bad_quantity"],
        dropped_nonpositive_price=dropped["nonpositive_price"],
        duplicate_rows=int(duplicated.sum()),
        duplicates_dropped=drop_duplicates,
        cancellation_rows=int(cancelled.sum()),
        return_rows=int(log[IS_RETURN].sum()),
        rows_kept=len(log),
        customers=int(log[CUSTOMER_ID].nunique()),
        first_timestamp=None if span[0] is None else span[0].isoformat(),
        last_timestamp=None if span[1] is None else span[1].isoformat(),
    )
    return log, report


def check_log(log: pd.DataFrame, owner: str) -> None:
    """Refuse a frame that is not a cleaned log, naming what is missing and who needs it."""
    if not isinstance(log, pd.DataFrame):
        raise TypeError(
            f"{owner} needs the cleaned log from load_transactions (a DataFrame). Got {type(log).__name__} instead."
        )
    missing = [c for c in REQUIRED_CANONICAL if c not in log.columns]
    if missing:
        raise FactoryInputError(
            f"{owner} needs the cleaned log from load_transactions; it has no column "
            f"{missing[0]!r}. Columns are: {', '.join(map(str, log.columns))}"
        )
    if not pd.api.types.is_datetime64_any_dtype(log[TIMESTAMP].dtype):
        raise FactoryInputError(f"{owner} needs column 'timestamp' as datetime64. Got {log[TIMESTAMP].dtype} instead.")
