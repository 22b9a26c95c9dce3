"""Transaction log → one row of RFM+X features per customer, and the future value tier label.

The pieces, in the order the default job uses them::

    log, report = load_transactions(path, LogColumns.online_retail())  # clean, counted
    cutoff = default_cutoff(log, horizon_days=90)                      # last day − horizon
    features = build_customer_features(log, cutoff, dormant_days=30)   # strictly < cutoff
    tier, info = future_value_tier(log, cutoff, features.index)        # [cutoff, +90 days)

``build_value_tier_table()`` runs all four on the bundled Online Retail data;
``engine="spark"`` runs them on Spark (``load_log`` reads a log with either engine), and
``write_synthetic_log`` writes a log of any size with the bundled one's statistics.
"""

from factory._settings import ENGINES

from ._columns import AMOUNT, CUSTOMER_ID, TIMESTAMP, LogColumns
from ._customer import FEATURE_COLUMNS, build_customer_features
from ._log import load_transactions, stock_code_family
from ._report import CleaningReport
from ._synthetic import SyntheticLog, write_synthetic_log
from ._table import LoadedLog, build_value_tier_table, default_log_path, load_log
from ._value_tier import VALUE_TIERS, default_cutoff, future_value_tier, value_tier_from_spend

__all__ = [
    "AMOUNT",
    "CUSTOMER_ID",
    "TIMESTAMP",
    "ENGINES",
    "FEATURE_COLUMNS",
    "VALUE_TIERS",
    "CleaningReport",
    "LoadedLog",
    "LogColumns",
    "SyntheticLog",
    "build_customer_features",
    "build_value_tier_table",
    "default_cutoff",
    "default_log_path",
    "future_value_tier",
    "load_log",
    "load_transactions",
    "stock_code_family",
    "value_tier_from_spend",
    "write_synthetic_log",
]
