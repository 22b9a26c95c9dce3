"""The default job: bundled Online Retail log → one labelled row per customer."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ._columns import CUSTOMER_ID
from ._customer import build_customer_features
from ._log import load_transactions
from ._value_tier import default_cutoff, future_value_tier


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
        cutoff if cutoff is not None else (lambda log: default_cutoff(log, horizon_days)),
        dormant_days=dormant_days,
        dormant_note="dormant customers are kept and flagged",
    )
    tier, tier_info = future_value_tier(log, info["cutoff"], features.index, horizon_days=horizon_days)
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
    cutoff: pd.Timestamp | str | Callable[[pd.DataFrame], pd.Timestamp],
    *,
    dormant_days: float,
    dormant_note: str,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The common start of the bundled jobs (value tier, segment discovery): load the log, build
    the features at the cutoff (a date, or a rule applied to the log) and the ``info`` every job
    reports. Returns ``(log, features indexed by customer, info)``."""
    source = default_log_path() if path is None else Path(path)
    log, cleaning = load_transactions(source)
    at = cutoff(log) if callable(cutoff) else cutoff
    features = build_customer_features(log, at, dormant_days=dormant_days)
    info: dict[str, Any] = {
        "source": str(source),
        "cleaning": cleaning,
        "cutoff": pd.Timestamp(at).isoformat(),
        "dormant_days": dormant_days,
        "dormant_rule": (
            f"is_dormant = 'yes' when a customer has no log line in the {dormant_days:g} days "
            f"before the cutoff; {dormant_note}"
        ),
        "n_customers": int(len(features)),
        "dormant_customers": int((features["is_dormant"] == "yes").sum()),
        "feature_columns": list(features.columns),
    }
    return log, features, info
