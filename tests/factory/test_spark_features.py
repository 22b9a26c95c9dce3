"""The customer table built on Spark equals the pandas one (issue 17: features on Spark).

Every customer and every feature of the bundled Online Retail log, on ``local[2]``: numbers
within 1e-9 relative (Spark adds in another order; where a net spend cancels to zero, within
1e-9 absolute), strings exact, the same cleaning counts and the same value-tier labels.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from factory.features import build_customer_features, build_value_tier_table, load_transactions
from factory.features._spark import spark_customer_features, spark_transactions, strftime_to_spark
from factory.features._table import load_log

RTOL = 1e-9
ATOL = 1e-9  # a billionth of a currency unit: only matters where the true value is 0


def assert_same_table(spark_table: pd.DataFrame, pandas_table: pd.DataFrame) -> None:
    """Same customers in the same order, same columns and dtypes, numbers close, strings equal."""
    assert list(spark_table.columns) == list(pandas_table.columns)
    assert spark_table.index.equals(pandas_table.index)
    assert spark_table.dtypes.equals(pandas_table.dtypes)
    for name in pandas_table.columns:
        ours, reference = spark_table[name].to_numpy(), pandas_table[name].to_numpy()
        if pandas_table[name].dtype == "float64":
            close = np.isclose(ours, reference, rtol=RTOL, atol=ATOL, equal_nan=True)
            assert close.all(), (
                f"{name}: {(~close).sum()} customers differ, e.g. {ours[~close][:3]} vs {reference[~close][:3]}"
            )
        else:
            assert (ours.astype(object) == reference.astype(object)).all(), name


@pytest.fixture(scope="module")
def pandas_job() -> tuple[pd.DataFrame, dict[str, Any]]:
    return build_value_tier_table()


@pytest.fixture(scope="module")
def spark_job(spark: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    return build_value_tier_table(engine="spark")


def test_bundled_log_table_is_the_same_on_spark(pandas_job: Any, spark_job: Any) -> None:
    (reference, reference_info), (table, info) = pandas_job, spark_job
    assert len(table) == 3370
    assert_same_table(table.set_index("customer_id"), reference.set_index("customer_id"))
    # The labels come from the same spend: same thresholds (to the cent) and counts.
    assert info["tier_counts"] == reference_info["tier_counts"]
    np.testing.assert_allclose(info["thresholds"]["thresholds"], reference_info["thresholds"]["thresholds"], rtol=RTOL)
    assert info["cutoff"] == reference_info["cutoff"] == "2011-09-10T00:00:00"
    assert info["engine"] == "spark" and reference_info["engine"] == "pandas"


def test_bundled_log_cleaning_report_is_the_same_on_spark(pandas_job: Any, spark_job: Any) -> None:
    reference, report = pandas_job[1]["cleaning"], spark_job[1]["cleaning"]
    assert report == reference
    assert (report.rows_read, report.dropped_missing_customer, report.duplicate_rows, report.return_rows) == (
        541909,
        135080,
        5227,
        8905,
    )


def test_partitioned_csv_folder_gives_the_pandas_features(spark: Any, tmp_path: Path) -> None:
    """A folder of CSV part files (as Spark or a nightly export writes them) is one log."""
    raw = pd.read_parquet(Path(__file__).resolve().parents[2] / "data/online_retail/online_retail.parquet")
    raw = raw.iloc[:40_000]
    whole = tmp_path / "log.csv"
    raw.to_csv(whole, index=False)
    parts = tmp_path / "parts"
    parts.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(len(raw)), 3)):
        raw.iloc[chunk].to_csv(parts / f"part-{i:05d}.csv", index=False)

    log, report = load_transactions(whole)
    spark_log, spark_report = spark_transactions(spark, parts)
    assert spark_report.rows_kept == report.rows_kept and spark_report.customers == report.customers
    cutoff = "2011-01-15"
    assert_same_table(
        spark_customer_features(spark_log, cutoff, dormant_days=10.5),
        build_customer_features(log, cutoff, dormant_days=10.5),
    )
    spark_log.unpersist()


def test_spark_engine_refuses_what_it_cannot_read(spark: Any, tmp_path: Path) -> None:
    odd = tmp_path / "log"
    odd.mkdir()
    (odd / "part-0.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=r"has files with suffixes \['.json'\]; the Spark engine reads"):
        load_log(odd, engine="spark")
    with pytest.raises(FileNotFoundError, match="absent.parquet does not exist"):
        load_log(tmp_path / "absent.parquet", engine="spark")
    with pytest.raises(ValueError, match=r"The 'engine' parameter of load_log must be one of \('pandas', 'spark'\)"):
        load_log(tmp_path / "absent.parquet", engine="dask")


def test_strftime_formats_become_spark_patterns() -> None:
    assert strftime_to_spark("%Y-%m-%d %H:%M:%S") == "yyyy-MM-dd HH:mm:ss"
    assert strftime_to_spark("%Y%m%d") == "yyyyMMdd"
    assert strftime_to_spark("%d/%m/%YT%H") == "dd/MM/yyyy'T'HH"
    with pytest.raises(ValueError, match="has %z, which the Spark engine cannot read"):
        strftime_to_spark("%Y %z")


def test_missing_pyspark_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from factory._spark import require_pyspark

    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(ImportError) as caught:
        require_pyspark("--engine spark")
    assert str(caught.value) == "--engine spark requires pyspark; install it with pip install 'edgeseg[spark]'"
    monkeypatch.setitem(sys.modules, "joblibspark", None)
    with pytest.raises(ImportError) as caught:
        require_pyspark("The search on Spark", "joblibspark")
    assert str(caught.value) == "The search on Spark requires joblibspark; install it with pip install 'edgeseg[spark]'"
