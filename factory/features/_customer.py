"""One row of RFM+X features per customer, from the log strictly before a cutoff."""

from __future__ import annotations

import numpy as np
import pandas as pd

from edge_runtime.customer_state import FEATURE_NAMES
from factory.errors import FactoryInputError

from ._columns import AMOUNT, CATEGORY, COUNTRY, CUSTOMER_ID, INVOICE_ID, IS_RETURN, PRODUCT, QUANTITY, TIMESTAMP
from ._log import check_log
from ._params import as_cutoff, positive_number

_DAY = pd.Timedelta(days=1)

#: Every feature column in output order; optional ones appear only when the log allows them.
#: One list for the factory and the till: the device's incremental implementation defines it.
FEATURE_COLUMNS = FEATURE_NAMES


def _most_frequent(past: pd.DataFrame, column: str, customers: pd.Index) -> pd.Series:
    """Each customer's most frequent value of ``column``; ties go to the alphabetically first."""
    counts = past.groupby([CUSTOMER_ID, column], sort=False, observed=True).size()
    counts = counts.rename("n").reset_index()
    counts = counts.sort_values([CUSTOMER_ID, "n", column], ascending=[True, False, True])
    top = counts.drop_duplicates(CUSTOMER_ID).set_index(CUSTOMER_ID)[column]
    return top.reindex(customers).astype("str")


def build_customer_features(log: pd.DataFrame, cutoff: pd.Timestamp | str, *, dormant_days: float = 30) -> pd.DataFrame:
    """RFM+X features per customer, using only log lines strictly before ``cutoff``.

    A *purchase* is a line that is not a return. A customer gets a row if they made at least
    one purchase before the cutoff; a customer seen only through returns has no basis for
    spend features and is left out.

    Columns (float64 unless noted; "days" are fractional days):

    - ``recency_days``: cutoff − last purchase.
    - ``frequency``: distinct purchase invoices; without invoice ids, distinct purchase days
      (CDNOW's convention: one order per customer per day).
    - ``monetary``: net spend: purchases minus returns. Can be ≤ 0 when a customer returns
      goods bought before the log starts; kept as is, it is real information.
    - ``tenure_days``: cutoff − first purchase.
    - ``avg_basket_value`` / ``avg_basket_items``: gross purchase value / items per basket
      (returns are excluded here: they are not baskets, they are in ``return_rate``).
    - ``return_rate``: returned value / purchased value, clipped to [0, 1] (a customer can
      return more than the log shows them buying, for the same reason as above).
    - ``product_breadth``: distinct products bought (only if the log has products).
    - ``category_breadth``: distinct categories bought; ``top_category_share``: share of
      purchase value spent in the customer's top category, a cross-category affinity
      measure (1.0 = single-category shopper). Only if the log has categories.
    - ``inter_purchase_days``: mean gap between distinct purchase days,
      ``(last day − first day) / (days − 1)``. **NaN for one-day buyers**: there is no gap,
      and 0 or a sentinel would lie to the model; the preprocessing must impute it.
    - ``country`` (str): the most frequent country on the customer's lines (ties: the
      alphabetically first). Only if the log has countries.
    - ``is_dormant`` (str ``"yes"``/``"no"``): the explicit dormant rule: no line at all,
      purchase or return, in the ``dormant_days`` days before the cutoff. Dormant customers
      are kept and flagged, never silently dropped, so the model sees them and the report
      can count them.

    Returns
    -------
    DataFrame indexed by ``customer_id`` (str), sorted by it.

    Raises
    ------
    ValueError
        Bad parameter, a frame that is not a cleaned log, or no purchase before the cutoff.
    """
    owner = "build_customer_features"
    check_log(log, owner)
    cutoff = as_cutoff(cutoff, owner)
    dormant_days = positive_number(dormant_days, "dormant_days", owner)

    past = log.loc[log[TIMESTAMP] < cutoff]
    purchases = past.loc[~past[IS_RETURN]]
    if purchases.empty:
        raise FactoryInputError(
            f"{owner}: the log has no purchase before the cutoff {cutoff.isoformat()} "
            f"(it spans {log[TIMESTAMP].min()} to {log[TIMESTAMP].max()})"
        )
    by_customer = purchases.groupby(CUSTOMER_ID, sort=True)
    customers = pd.Index(by_customer.size().index.astype("str"), name=CUSTOMER_ID)
    # Only these customers matter from here on; returns of other customers are ignored.
    past = past.loc[past[CUSTOMER_ID].isin(customers)]

    first = by_customer[TIMESTAMP].min()
    last = by_customer[TIMESTAMP].max()
    gross = by_customer[AMOUNT].sum()
    items = by_customer[QUANTITY].sum()
    day = purchases[TIMESTAMP].dt.normalize()
    days_by_customer = day.groupby(purchases[CUSTOMER_ID], sort=True)
    n_days = days_by_customer.nunique()
    day_span = (days_by_customer.max() - days_by_customer.min()) / _DAY
    baskets = n_days
    if INVOICE_ID in log.columns:
        # A customer whose lines all lack an invoice id falls back to purchase days.
        invoices = by_customer[INVOICE_ID].nunique()
        baskets = invoices.where(invoices > 0, n_days)

    net = past.groupby(CUSTOMER_ID, sort=True)[AMOUNT].sum().reindex(customers)
    returned = -(past.loc[past[IS_RETURN]].groupby(CUSTOMER_ID)[AMOUNT].sum().reindex(customers)).fillna(0.0)
    last_seen = past.groupby(CUSTOMER_ID, sort=True)[TIMESTAMP].max().reindex(customers)

    features: dict[str, pd.Series] = {
        "recency_days": (cutoff - last) / _DAY,
        "frequency": baskets.astype("float64"),
        "monetary": net,
        "tenure_days": (cutoff - first) / _DAY,
        "avg_basket_value": gross / baskets,
        "avg_basket_items": items / baskets,
        "return_rate": (returned / gross).clip(0.0, 1.0),
    }
    if PRODUCT in log.columns:
        features["product_breadth"] = by_customer[PRODUCT].nunique().astype("float64")
    if CATEGORY in log.columns:
        features["category_breadth"] = by_customer[CATEGORY].nunique().astype("float64")
        spend = purchases.groupby([CUSTOMER_ID, CATEGORY], sort=False)[AMOUNT].sum()
        features["top_category_share"] = spend.groupby(level=CUSTOMER_ID).max() / gross
    features["inter_purchase_days"] = (day_span / (n_days - 1)).where(n_days > 1, np.nan)
    if COUNTRY in log.columns:
        features["country"] = _most_frequent(past, COUNTRY, customers)
    dormant = last_seen < cutoff - pd.Timedelta(days=dormant_days)
    features["is_dormant"] = dormant.map({True: "yes", False: "no"}).astype("str")

    table = pd.DataFrame({name: values.reindex(customers) for name, values in features.items()}, index=customers)
    for name in table.columns:
        if name not in ("country", "is_dormant"):
            table[name] = table[name].astype("float64")
    return table
