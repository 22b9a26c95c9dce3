"""The transaction log → RFM+X customer table on Apache Spark, equal to the pandas reference.

:func:`load_log_spark` reads a log (a Parquet or CSV file, or a folder of part files as Spark
writes them) with PySpark, cleans it with the rules of :func:`factory.features.load_transactions`
(each counted in the same :class:`CleaningReport`) and returns a :class:`LoadedLog` whose
``features`` are :func:`factory.features.build_customer_features` written as Spark aggregations.
Only the result — one row per customer — comes back to the driver, so the log can be far larger
than the driver's memory; the labels, split and search then run as for a pandas-built table.

Equal, not similar: ``tests/factory/test_spark_features.py`` checks every customer and feature
against pandas on the bundled log (1e-9 relative: sums are added in another order; strings
exact). What keeps them equal:

- times are compared as epoch microseconds of the naive wall clock (the session time zone is
  UTC, ``factory._spark``), so cutoffs, day boundaries and the dormant rule are exact integers;
- the cutoff, the dormant threshold and the label window are computed on the driver with
  pandas, exactly as the reference does, and only their microseconds go to Spark;
- NaN is checked explicitly (in Spark ``NaN > 0`` is true and ``NaN = NaN``);
- ANSI SQL mode (Spark 4's default) is respected: bad numbers and dates go through ``try_``
  functions and become missing, as ``errors="coerce"`` does in pandas.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from factory.errors import FactoryInputError

from . import _columns
from ._columns import AMOUNT, CATEGORY, COUNTRY, CUSTOMER_ID, INVOICE_ID, IS_RETURN, PRODUCT, QUANTITY, TIMESTAMP
from ._customer import FEATURE_COLUMNS
from ._log import _CSV, _PARQUET, _TSV, NON_MERCHANDISE, _check_columns, _choose_columns
from ._params import as_cutoff, positive_number
from ._report import CleaningReport
from ._table import LoadedLog

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

__all__ = ["load_log_spark", "spark_customer_features", "spark_transactions", "strftime_to_spark"]

_MICROS_PER_DAY = 86_400_000_000
# Python's str.strip(): Unicode white space and the ASCII separators \x1c-\x1f.
_STRIP = r"(?U)^[\s\x1c-\x1f]+|[\s\x1c-\x1f]+$"
_STRFTIME = {
    "Y": "yyyy", "m": "MM", "d": "dd", "H": "HH", "M": "mm", "S": "ss", "y": "yy", "b": "MMM",
    "B": "MMMM", "f": "SSSSSS", "I": "hh", "p": "a", "j": "DDD", "a": "EEE", "A": "EEEE", "%": "%",
}  # fmt: skip


def strftime_to_spark(fmt: str) -> str:
    """A ``strftime`` format as a Spark datetime pattern (literal text quoted).

    >>> strftime_to_spark("%Y-%m-%d %H:%M:%S")
    'yyyy-MM-dd HH:mm:ss'
    >>> strftime_to_spark("%Y%m%dT%H")
    "yyyyMMdd'T'HH"
    """
    out: list[str] = []
    for directive, literal in re.findall(r"%(.)|([^%]+)", fmt):
        if literal:
            out.append(re.sub(r"[A-Za-z']+", lambda m: "'" + m.group(0).replace("'", "''") + "'", literal))
        elif directive in _STRFTIME:
            out.append(_STRFTIME[directive])
        else:
            raise FactoryInputError(
                f"The 'timestamp_format' of LogColumns has %{directive}, which the Spark engine cannot read; "
                f"supported: {', '.join('%' + d for d in _STRFTIME)}. Got {fmt!r} instead."
            )
    return "".join(out)


def _data_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))
    raise FileNotFoundError(f"transaction log {path} does not exist")


def _kind(path: Path) -> str:
    """parquet / csv / tsv from the file's suffix, or from the part files' of a folder."""
    files = _data_files(path)
    suffixes = {p.suffix.lower() for p in files} - {".crc"}
    for kind, known in (("parquet", _PARQUET), ("csv", _CSV), ("tsv", _TSV)):
        if suffixes and suffixes <= set(known):
            return kind
    raise FactoryInputError(
        f"transaction log {path} has files with suffixes {sorted(suffixes)!r}; the Spark engine reads "
        f"{', '.join(_PARQUET + _CSV + _TSV)} files or a folder of them"
    )


def _read(spark: SparkSession, path: Path, kind: str) -> DataFrame:
    if kind == "parquet":
        return spark.read.parquet(str(path))
    # Every column as text, as pandas reads the text roles; numbers are cast (try_cast) below.
    return spark.read.csv(str(path), header=True, sep="," if kind == "csv" else "\t", inferSchema=False)


def _strip(column: Column) -> Column:
    from pyspark.sql import functions as F

    return F.regexp_replace(column.cast("string"), _STRIP, "")


def _is_number(column: Column) -> Column:
    from pyspark.sql import functions as F

    return column.isNotNull() & ~F.isnan(column)


def _customer_ids(raw: DataFrame, name: str) -> Column:
    """``factory.features._log._customer_ids`` in Spark: float ids without fractions as integers."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, FloatType

    column = F.col(name)
    if isinstance(raw.schema[name].dataType, (DoubleType, FloatType)):
        finite = _is_number(column) & ~column.isin(float("inf"), float("-inf"))
        fractional = raw.filter(finite & (column != F.floor(column))).limit(1).count()
        text = column.try_cast("long").cast("string") if fractional == 0 else column.cast("string")
        text = F.when(_is_number(column), text)
    else:
        text = column.cast("string")
    ids = F.regexp_replace(_strip(text), r"^(\d+)\.0+$", "$1")
    return F.when(ids != "", ids)


def _timestamps(raw: DataFrame, name: str, fmt: str | None) -> Column:
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampNTZType, TimestampType

    column = F.col(name)
    if isinstance(raw.schema[name].dataType, (TimestampType, TimestampNTZType)):
        parsed = column.cast("timestamp")
    elif fmt is None:
        parsed = F.try_to_timestamp(column.cast("string"))
    else:
        parsed = F.try_to_timestamp(column.cast("string"), F.lit(strftime_to_spark(fmt)))
    # Session time zone UTC: a timestamp's epoch microseconds are its wall clock's.
    return F.unix_micros(parsed)


def spark_transactions(
    spark: SparkSession, path: str | Path, columns: _columns.LogColumns | None = None, *, drop_duplicates: bool = False
) -> tuple[DataFrame, CleaningReport]:
    """:func:`factory.features.load_transactions` on Spark: the cleaned log and its report.

    The log's ``timestamp`` column holds epoch microseconds of the wall clock (``long``), the
    other canonical columns are as in pandas. The returned DataFrame is cached (it feeds every
    aggregation of the job); ``unpersist()`` it when done.
    """
    from pyspark.sql import functions as F

    path = Path(path)
    kind = _kind(path)
    raw = _read(spark, path, kind)
    header = list(raw.columns)
    if columns is None:
        columns = _choose_columns(header)
    _check_columns(path, header, columns)

    quantity = F.col(columns.quantity).try_cast("double")
    if columns.unit_price is not None:
        unit_price = F.col(columns.unit_price).try_cast("double")
        amount = quantity * unit_price
    else:
        amount = F.col(str(columns.amount)).try_cast("double")
        unit_price = F.try_divide(amount, quantity)
    canonical: dict[str, Column] = {
        CUSTOMER_ID: _customer_ids(raw, columns.customer_id),
        TIMESTAMP: _timestamps(raw, columns.timestamp, columns.timestamp_format),
        QUANTITY: quantity,
        _columns.UNIT_PRICE: unit_price,
        AMOUNT: amount,
    }
    cancelled = F.lit(False)
    if columns.invoice_id is not None:
        canonical[INVOICE_ID] = _strip(F.col(columns.invoice_id))
        if columns.cancel_prefix:
            cancelled = F.coalesce(canonical[INVOICE_ID].startswith(columns.cancel_prefix), F.lit(False))
    if columns.product is not None:
        canonical[PRODUCT] = _strip(F.col(columns.product))
    if columns.category is not None:
        canonical[CATEGORY] = _strip(F.col(columns.category))
    elif columns.category_from_stock_code:
        code = canonical[PRODUCT]
        family = F.when(code.rlike(r"(?U)^\d{2}\d{3}[A-Za-z]*$"), F.substring(code, 1, 2))
        canonical[CATEGORY] = F.coalesce(family, F.lit(NON_MERCHANDISE))
    if columns.country is not None:
        canonical[COUNTRY] = _strip(F.col(columns.country))
    canonical[IS_RETURN] = F.coalesce(quantity < 0, F.lit(False)) | cancelled
    canonical[AMOUNT] = F.when(cancelled, -F.abs(amount)).otherwise(amount)  # as pandas: a cancellation subtracts

    frame = raw.select(*(value.alias(key) for key, value in canonical.items()), cancelled.alias("_cancelled"))
    price = F.col(_columns.UNIT_PRICE)
    rules = {
        "missing_customer": F.col(CUSTOMER_ID).isNotNull(),
        "bad_timestamp": F.col(TIMESTAMP).isNotNull(),
        "bad_quantity": _is_number(F.col(QUANTITY)) & (F.col(QUANTITY) != 0),
        "nonpositive_price": _is_number(price) & (price > 0) & (price != float("inf")),
    }
    # Sequential rules, as in pandas: each count is taken on what the previous rules kept.
    counts: list[Column] = [F.count(F.lit(1)).alias("rows_read")]
    kept = F.lit(True)
    for name, ok in rules.items():
        counts.append(F.sum(F.when(kept & ~F.coalesce(ok, F.lit(False)), 1).otherwise(0)).alias(name))
        kept = kept & F.coalesce(ok, F.lit(False))
    dropped = frame.agg(*counts).first()
    assert dropped is not None
    log = frame.filter(kept).cache()
    canonical_names = list(canonical)
    total = log.count()
    distinct = log.select(*canonical_names).distinct().count()
    if drop_duplicates:
        deduplicated = log.dropDuplicates(canonical_names).cache()
        log.unpersist()
        log = deduplicated
    summary = log.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.col("_cancelled").cast("int")).alias("cancelled"),
        F.sum(F.col(IS_RETURN).cast("int")).alias("returns"),
        F.count_distinct(CUSTOMER_ID).alias("customers"),
        F.min(TIMESTAMP).alias("first"),
        F.max(TIMESTAMP).alias("last"),
    ).first()
    assert summary is not None
    report = CleaningReport(
        source=str(path),
        rows_read=int(dropped["rows_read"]),
        dropped_missing_customer=int(dropped["missing_customer"] or 0),
        dropped_bad_timestamp=int(dropped["bad_timestamp"] or 0),
        dropped_bad_quantity=int(dropped["bad_quantity"] or 0),
        dropped_nonpositive_price=int(dropped["nonpositive_price"] or 0),
        duplicate_rows=total - distinct,
        duplicates_dropped=drop_duplicates,
        cancellation_rows=int(summary["cancelled"] or 0),
        return_rows=int(summary["returns"] or 0),
        rows_kept=int(summary["rows"]),
        customers=int(summary["customers"]),
        first_timestamp=None if summary["first"] is None else _moment(summary["first"]).isoformat(),
        last_timestamp=None if summary["last"] is None else _moment(summary["last"]).isoformat(),
    )
    return log.drop("_cancelled"), report


def _money_sum(name: str) -> Column:
    """Sum of money without rounding drift: exact in decimal, rounded once to a double.

    A net spend can cancel to (almost) zero; Spark adds doubles in partition order, pandas with
    Kahan compensation, so a plain double sum could differ from pandas in every digit there.
    """
    from pyspark.sql import functions as F

    return F.sum(F.col(name).cast("decimal(38,18)")).cast("double")


def _distinct(name: str) -> Column:
    """Distinct non-null values per group, as pandas' ``nunique``.

    Not ``count_distinct``: several of those in one aggregation make Spark copy every row once
    per distinct column (its Expand plan); a set per customer stays small (one customer's days,
    invoices or products).
    """
    from pyspark.sql import functions as F

    return F.size(F.collect_set(name))


def _to_pandas(frame: DataFrame) -> pd.DataFrame:
    """``frame.toPandas()`` without pyspark 4.1's pandas-3 deprecation notice on every column."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The copy keyword is deprecated")
        return frame.toPandas()


def _moment(micros: int) -> pd.Timestamp:
    return pd.Timestamp(int(micros), unit="us")


def _micros(moment: pd.Timestamp) -> int:
    return int(pd.Timestamp(moment).value) // 1000  # .value is nanoseconds whatever the unit


def spark_customer_features(log: DataFrame, cutoff: pd.Timestamp | str, *, dormant_days: float = 30) -> pd.DataFrame:
    """:func:`factory.features.build_customer_features` on a log from :func:`spark_transactions`.

    Same columns, same rules, same customers; the result is a pandas frame indexed by
    ``customer_id`` and sorted by it.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    owner = "build_customer_features"
    cutoff = as_cutoff(cutoff, owner)
    dormant_days = positive_number(dormant_days, "dormant_days", owner)
    cutoff_us = _micros(cutoff)
    dormant_us = _micros(cutoff - pd.Timedelta(days=dormant_days))  # pandas' own rounding of the days
    names = set(log.columns)

    past = log.filter(F.col(TIMESTAMP) < cutoff_us)
    purchases = past.filter(~F.col(IS_RETURN)).withColumn("_day", F.floor(F.col(TIMESTAMP) / _MICROS_PER_DAY))
    aggregations = [
        F.min(TIMESTAMP).alias("_first"),
        F.max(TIMESTAMP).alias("_last"),
        _money_sum(AMOUNT).alias("_gross"),
        F.sum(QUANTITY).alias("_items"),
        _distinct("_day").alias("_days"),
        F.min("_day").alias("_first_day"),
        F.max("_day").alias("_last_day"),
    ]
    if INVOICE_ID in names:
        aggregations.append(_distinct(INVOICE_ID).alias("_invoices"))
    if PRODUCT in names:
        aggregations.append(_distinct(PRODUCT).alias("product_breadth"))
    if CATEGORY in names:
        aggregations.append(_distinct(CATEGORY).alias("category_breadth"))
    table = purchases.groupBy(CUSTOMER_ID).agg(*aggregations)
    # Only customers with a purchase matter; their returns count, other customers' do not.
    past = past.join(table.select(CUSTOMER_ID), CUSTOMER_ID, "left_semi")
    past = past.withColumn("_return_amount", F.when(F.col(IS_RETURN), F.col(AMOUNT)))
    table = table.join(
        past.groupBy(CUSTOMER_ID).agg(
            _money_sum(AMOUNT).alias("monetary"),
            _money_sum("_return_amount").alias("_returned"),
            F.max(TIMESTAMP).alias("_last_seen"),
        ),
        CUSTOMER_ID,
    )
    if CATEGORY in names:
        spend = purchases.groupBy(CUSTOMER_ID, CATEGORY).agg(_money_sum(AMOUNT).alias("_spend"))
        table = table.join(spend.groupBy(CUSTOMER_ID).agg(F.max("_spend").alias("_top_spend")), CUSTOMER_ID)
    if COUNTRY in names:
        # Most frequent country on the customer's lines; ties go to the alphabetically first.
        ranked = past.groupBy(CUSTOMER_ID, COUNTRY).agg(F.count(F.lit(1)).alias("_n"))
        order = Window.partitionBy(CUSTOMER_ID).orderBy(F.col("_n").desc(), F.col(COUNTRY).asc())
        top = ranked.withColumn("_rank", F.row_number().over(order)).filter(F.col("_rank") == 1)
        table = table.join(top.select(CUSTOMER_ID, COUNTRY), CUSTOMER_ID, "left")

    baskets = F.col("_days").cast("double")
    if INVOICE_ID in names:
        baskets = F.when(F.col("_invoices") > 0, F.col("_invoices")).otherwise(F.col("_days")).cast("double")
    returned = -F.coalesce(F.col("_returned"), F.lit(0.0))
    out: dict[str, Column] = {
        "recency_days": (F.lit(cutoff_us) - F.col("_last")) / _MICROS_PER_DAY,
        "frequency": baskets,
        "monetary": F.col("monetary"),
        "tenure_days": (F.lit(cutoff_us) - F.col("_first")) / _MICROS_PER_DAY,
        "avg_basket_value": F.col("_gross") / baskets,
        "avg_basket_items": F.col("_items") / baskets,
        "return_rate": F.least(F.greatest(returned / F.col("_gross"), F.lit(0.0)), F.lit(1.0)),
    }
    if PRODUCT in names:
        out["product_breadth"] = F.col("product_breadth").cast("double")
    if CATEGORY in names:
        out["category_breadth"] = F.col("category_breadth").cast("double")
        out["top_category_share"] = F.col("_top_spend") / F.col("_gross")
    gaps = F.col("_days") - 1
    out["inter_purchase_days"] = F.when(gaps > 0, (F.col("_last_day") - F.col("_first_day")) / gaps)
    if COUNTRY in names:
        out["country"] = F.col(COUNTRY)
    out["is_dormant"] = F.when(F.col("_last_seen") < dormant_us, "yes").otherwise("no")

    result = _to_pandas(table.select(F.col(CUSTOMER_ID), *(value.alias(key) for key, value in out.items())))
    if result.empty:
        raise FactoryInputError(f"{owner}: the log has no purchase before the cutoff {cutoff.isoformat()}")
    result[CUSTOMER_ID] = result[CUSTOMER_ID].astype("str")
    result = result.set_index(CUSTOMER_ID).sort_index()
    for name in result.columns:
        result[name] = result[name].astype("str" if name in ("country", "is_dormant") else "float64")
    return result[[c for c in FEATURE_COLUMNS if c in result.columns]]


def load_log_spark(
    path: str | Path, *, master: str | None = None, columns: _columns.LogColumns | None = None, session: Any = None
) -> LoadedLog:
    """:func:`factory.features._table.load_log` on Spark (the session from ``factory._spark``)."""
    from pyspark.sql import functions as F

    from factory._spark import DEFAULT_SPARK_MASTER, spark_session

    spark = session or spark_session(master or DEFAULT_SPARK_MASTER)
    log, report = spark_transactions(spark, path, columns)
    if report.rows_kept == 0:
        raise FactoryInputError(f"transaction log {path}: no line is left after cleaning")
    assert report.first_timestamp and report.last_timestamp

    def window_spend(start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
        window = log.filter((F.col(TIMESTAMP) >= _micros(start)) & (F.col(TIMESTAMP) < _micros(end)))
        spend = _to_pandas(window.groupBy(CUSTOMER_ID).agg(_money_sum(AMOUNT).alias(AMOUNT)))
        return spend.set_index(spend[CUSTOMER_ID].astype("str"))[AMOUNT].rename_axis(CUSTOMER_ID)

    return LoadedLog(
        report=report,
        first=pd.Timestamp(report.first_timestamp),
        last=pd.Timestamp(report.last_timestamp),
        features=lambda cutoff, dormant_days: spark_customer_features(log, cutoff, dormant_days=dormant_days),
        window_spend=window_spend,
        engine="spark",
    )
