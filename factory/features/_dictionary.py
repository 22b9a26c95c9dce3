"""What each RFM+X feature means and in which unit: the manifest's ``feature_dictionary``.

The feature program says *how* a till computes an input; this says what a person reads: the
meaning (relative to which date, counted how) and the unit. ``edge-runtime schema`` prints it,
the model card's feature dictionary shows it, and README's record for the default model uses it.
The wording follows :func:`factory.features._customer.build_customer_features`, whose docstring
defines the columns.
"""

from __future__ import annotations

from typing import Any

__all__ = ["feature_dictionary"]

# name -> (meaning, unit); "{cutoff}", "{currency}" and "{dormant_days}" are filled per job.
_ENTRIES: dict[str, tuple[str, str]] = {
    "recency_days": ("days from the customer's last purchase to the cutoff date {cutoff}", "days"),
    "frequency": ("distinct purchase invoices before the cutoff (baskets)", "count"),
    "monetary": ("net spend before the cutoff: purchases minus returns (can be negative)", "{currency}"),
    "tenure_days": ("days from the customer's first purchase to the cutoff date {cutoff}", "days"),
    "avg_basket_value": ("gross purchase value per basket (returns excluded)", "{currency}"),
    "avg_basket_items": ("items per basket (returns excluded)", "items"),
    "return_rate": ("returned value / purchased value, clipped to [0, 1]", "share 0-1"),
    "product_breadth": ("distinct products bought", "count"),
    "category_breadth": ("distinct product families bought (stock-code families)", "count"),
    "top_category_share": (
        "share of purchase value in the customer's top product family (1 = one family)",
        "share 0-1",
    ),
    "inter_purchase_days": (
        "mean gap between distinct purchase days; missing (null) for one-day buyers",
        "days",
    ),
    "country": ("the most frequent country on the customer's lines", "country name as in the log"),
    "is_dormant": (
        "'yes' when the customer has no line at all in the {dormant_days} days before the cutoff, else 'no'",
        "yes/no",
    ),
}


def feature_dictionary(
    columns: list[str], *, cutoff: str, dormant_days: float, currency: str = "GBP"
) -> dict[str, Any]:
    """``{name: {"meaning", "unit"}}`` for the RFM+X ``columns`` a job built (others left out).

    ``cutoff``: the job's cutoff date (ISO, date part used); ``currency``: the log's currency
    (the bundled UCI Online Retail log is in pounds sterling).
    """
    values = {"cutoff": str(cutoff)[:10], "currency": currency, "dormant_days": f"{dormant_days:g}"}
    return {
        name: {"meaning": meaning.format(**values), "unit": unit.format(**values)}
        for name, (meaning, unit) in _ENTRIES.items()
        if name in columns
    }
