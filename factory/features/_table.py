"""The default job: bundled Online Retail log → one labelled row per customer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from factory._settings import ENGINES
from factory.errors import FactoryInputError

from ._columns import AMOUNT, CUSTOMER_ID, TIMESTAMP, LogColumns
from ._customer import build_customer_features
from ._dictionary import feature_dictionary
from ._log import _choose_columns, _header, _reader_kind, load_transactions
from ._report import CleaningReport
from ._value_tier import cutoff_for_span, value_tier_from_spend


@dataclass(frozen=True)
class LoadedLog:
    """A cleaned transaction log on one engine, as the jobs use it.

    ``features(cutoff, dormant_days)`` is :func:`build_customer_features` on that engine (a
    pandas frame indexed by customer either way: one row per customer fits on the driver even
    when the log does not); ``window_spend(start, end)`` the net spend per customer of the lines
    in ``[start, end)``. ``first``/``last`` are the kept lines' first and last timestamps.
    ``frame``/``columns``: the cleaned pandas log and the column mapping it was read with (the
    skew gate replays it through the till's implementation); None on Spark, where the log
    need not fit on the driver.
    """

    report: CleaningReport
    first: pd.Timestamp
    last: pd.Timestamp
    features: Callable[[pd.Timestamp, float], pd.DataFrame]
    window_spend: Callable[[pd.Timestamp, pd.Timestamp], pd.Series]
    engine: str = "pandas"
    frame: pd.DataFrame | None = None
    columns: LogColumns | None = None


def load_log(path: str | Path, *, engine: str = "pandas", spark_master: str | None = None) -> LoadedLog:
    """Read and clean a transaction log with ``engine`` (``"pandas"`` or ``"spark"``).

    The Spark engine reads a file or a folder of part files (Parquet or CSV) with PySpark and
    gives the same report, features and spend as pandas (``factory.features._spark``).
    """
    if engine == "spark":
        from ._spark import load_log_spark

        return load_log_spark(path, master=spark_master)
    if engine != "pandas":
        raise FactoryInputError(
            f"The 'engine' parameter of load_log must be one of {ENGINES!r}. Got {engine!r} instead."
        )
    columns = _choose_columns(_header(Path(path), _reader_kind(Path(path)))) if Path(path).is_file() else None
    log, report = load_transactions(path, columns)
    if log.empty:
        raise FactoryInputError(f"transaction log {path}: no line is left after cleaning")

    def window_spend(start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
        window = log.loc[(log[TIMESTAMP] >= start) & (log[TIMESTAMP] < end)]
        return window.groupby(CUSTOMER_ID)[AMOUNT].sum()

    return LoadedLog(
        report=report,
        first=log[TIMESTAMP].min(),
        last=log[TIMESTAMP].max(),
        features=lambda cutoff, dormant_days: build_customer_features(log, cutoff, dormant_days=dormant_days),
        window_spend=window_spend,
        frame=log,
        columns=columns,
    )


def default_log_path() -> Path:
    """The bundled ``data/online_retail/online_retail.parquet`` of this repository.

    Resolved from this file's location (``factory/features/`` → repo root), so it works from
    any working directory and without ``factory/__init__.py`` being importable first.
    """
    return Path(__file__).resolve().parents[2] / "data" / "online_retail" / "online_retail.parquet"


def build_value_tier_table(
    path: str | Path | None = None,
    *,
    horizon_days: float = 90,
    dormant_days: float = 30,
    cutoff: pd.Timestamp | str | None = None,
    engine: str = "pandas",
    spark_master: str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Load a log, build customer features at a cutoff and label each customer's value tier.

    Parameters
    ----------
    path:
        The transaction log; ``None`` is the bundled Online Retail file.
    horizon_days:
        Length of the label window after the cutoff.
    dormant_days:
        The dormant rule's window before the cutoff (see ``build_customer_features``).
    cutoff:
        Defaults to :func:`default_cutoff` (last timestamp − horizon, at midnight).
    engine, spark_master:
        ``"pandas"`` (default) or ``"spark"`` (on ``spark_master``, default ``local[2]``; the
        same table, see :func:`load_log`).

    Returns
    -------
    (table, info):
        ``table`` has a ``customer_id`` column (an identifier: drop it before training),
        the feature columns and ``value_tier`` (str, one of ``VALUE_TIERS``). ``info`` is for
        the manifest and the CLI: ``cleaning`` is the :class:`CleaningReport` itself (``lines()``
        to print, ``to_dict()`` for JSON); every other value is JSON-serialisable: source,
        cutoff, horizon, the dormant rule and ``dormant_customers``, ``thresholds`` (the label
        rule from :func:`future_value_tier`), ``tier_counts``, ``build_seconds``.
    """
    started = time.perf_counter()
    log, features, info = feature_job(
        path,
        cutoff if cutoff is not None else (lambda first, last: cutoff_for_span(first, last, horizon_days)),
        dormant_days=dormant_days,
        dormant_note="dormant customers are kept and flagged",
        engine=engine,
        spark_master=spark_master,
    )
    tier, tier_info = value_tier_from_spend(
        log.window_spend, log.last, pd.Timestamp(info["cutoff"]), features.index, horizon_days=horizon_days
    )
    table = features.assign(value_tier=tier).reset_index()
    table[CUSTOMER_ID] = table[CUSTOMER_ID].astype("str")
    info.update(
        horizon_days=horizon_days,
        thresholds=tier_info,
        tier_counts=tier_info["counts"],
        build_seconds=round(time.perf_counter() - started, 3),
    )
    return table, info


def feature_job(
    path: str | Path | None,
    cutoff: pd.Timestamp | str | Callable[[pd.Timestamp, pd.Timestamp], pd.Timestamp],
    *,
    dormant_days: float,
    dormant_note: str,
    engine: str = "pandas",
    spark_master: str | None = None,
) -> tuple[LoadedLog, pd.DataFrame, dict[str, Any]]:
    """The common start of the bundled jobs (value tier, segment discovery): load the log, build
    the features at the cutoff (a date, or a rule applied to the log's first and last timestamps)
    and the ``info`` every job reports. Returns ``(log, features indexed by customer, info)``.

    On the pandas engine the features pass the skew gate (``factory.skew.check_skew``: the log
    replayed through the till's implementation gives the same table) and ``info`` carries the
    manifest's ``feature_program`` and ``skew_gate``; a ``SkewError`` (naming customer, feature
    and both values) fails the job."""
    source = default_log_path() if path is None else Path(path)
    log = load_log(source, engine=engine, spark_master=spark_master)
    at = pd.Timestamp(cutoff(log.first, log.last) if callable(cutoff) else cutoff)
    features = log.features(at, dormant_days)
    info: dict[str, Any] = {
        "source": str(source),
        "engine": engine,
        "cleaning": log.report,
        "cutoff": pd.Timestamp(at).isoformat(),
        "dormant_days": dormant_days,
        "dormant_rule": (
            f"is_dormant = 'yes' when a customer has no log line in the {dormant_days:g} days "
            f"before the cutoff; {dormant_note}"
        ),
        "n_customers": int(len(features)),
        "dormant_customers": int((features["is_dormant"] == "yes").sum()),
        "feature_columns": list(features.columns),
        # meaning and unit per input (manifest feature_dictionary); the bundled log is in GBP
        "feature_dictionary": feature_dictionary(
            list(features.columns),
            cutoff=pd.Timestamp(at).isoformat(),
            dormant_days=dormant_days,
            currency="GBP" if path is None else "the log's currency",
        ),
    }
    if log.frame is not None:
        from factory.skew import check_skew  # factory.skew imports this package: import on use

        gate = check_skew(log.frame, at, columns=log.columns, dormant_days=dormant_days, features=features)
        info["feature_program"] = gate.pop("feature_program")
        info["skew_gate"] = gate
    return log, features, info
