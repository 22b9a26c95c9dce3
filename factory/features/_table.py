"""The default job: bundled Online Retail log → one labelled row per customer."""

from __future__ import annotations

import time
from pathlib import Path

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
) -> tuple[pd.DataFrame, dict[str, object]]:
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
    source = default_log_path() if path is None else Path(path)
    log, report = load_transactions(source)
    if cutoff is None:
        cutoff = default_cutoff(log, horizon_days)
    features = build_customer_features(log, cutoff, dormant_days=dormant_days)
    tier, tier_info = future_value_tier(log, cutoff, features.index, horizon_days=horizon_days)
    table = features.assign(value_tier=tier).reset_index()
    table[CUSTOMER_ID] = table[CUSTOMER_ID].astype("str")

    n_dormant = int((table["is_dormant"] == "yes").sum())
    info: dict[str, object] = {
        "source": str(source),
        "cleaning": report,
        "cutoff": pd.Timestamp(cutoff).isoformat(),
        "horizon_days": horizon_days,
        "dormant_rule": (
            f"is_dormant = 'yes' when a customer has no log line in the {dormant_days:g} days "
            "before the cutoff; dormant customers are kept and flagged"
        ),
        "dormant_days": dormant_days,
        "n_customers": len(table),
        "dormant_customers": n_dormant,
        "feature_columns": list(features.columns),
        "thresholds": tier_info,
        "tier_counts": tier_info["counts"],
        "build_seconds": round(time.perf_counter() - started, 3),
    }
    return table, info
