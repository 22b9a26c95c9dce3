"""The default label: what a customer spends in the horizon after the cutoff, as a tier."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from factory.errors import FactoryInputError

from ._columns import AMOUNT, CUSTOMER_ID, TIMESTAMP
from ._log import check_log
from ._params import as_cutoff, positive_number

#: Class order of the future value tier, from no spend to the biggest spenders.
VALUE_TIERS = ("lapsed", "low", "mid", "high", "top")


def default_cutoff(log: pd.DataFrame, horizon_days: float = 90) -> pd.Timestamp:
    """The last timestamp minus the horizon, floored to midnight.

    Flooring (rather than rounding up) keeps the whole label window
    ``[cutoff, cutoff + horizon)`` inside the observed log, so nobody is labelled "lapsed"
    merely because the log ends; the last, partial day of the log falls outside the window.
    """
    check_log(log, "default_cutoff")
    if log.empty:
        raise FactoryInputError("default_cutoff: the log is empty")
    return cutoff_for_span(log[TIMESTAMP].min(), log[TIMESTAMP].max(), horizon_days)


def cutoff_for_span(first: pd.Timestamp, last: pd.Timestamp, horizon_days: float = 90) -> pd.Timestamp:
    """:func:`default_cutoff` from the log's first and last timestamps (any engine's log)."""
    owner = "default_cutoff"
    horizon = positive_number(horizon_days, "horizon_days", owner)
    cutoff = (last - pd.Timedelta(days=horizon)).normalize()
    if cutoff <= first:
        raise FactoryInputError(
            f"The 'horizon_days' parameter of {owner} leaves no history before the cutoff: "
            f"the log spans {first} to {last}. "
            f"Got {horizon_days!r} instead."
        )
    return cutoff


def _check_quantiles(quantiles: Sequence[float], owner: str) -> tuple[float, ...]:
    values = tuple(float(q) for q in quantiles)
    if len(values) != len(VALUE_TIERS) - 2 or not all(0 < q < 1 for q in values):
        raise FactoryInputError(
            f"The 'quantiles' parameter of {owner} must be {len(VALUE_TIERS) - 2} numbers in "
            f"(0, 1), one per boundary between {', '.join(VALUE_TIERS[1:])}. "
            f"Got {tuple(quantiles)!r} instead."
        )
    if any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise FactoryInputError(
            f"The 'quantiles' parameter of {owner} must be strictly increasing. Got {tuple(quantiles)!r} instead."
        )
    return values


def future_value_tier(
    log: pd.DataFrame,
    cutoff: pd.Timestamp | str,
    customers: pd.Index,
    *,
    horizon_days: float = 90,
    quantiles: Sequence[float] = (0.5, 0.8, 0.95),
) -> tuple[pd.Series, dict[str, object]]:
    """Label each customer by their net spend in the window ``[cutoff, cutoff + horizon)``.

    The window is half-open and starts *at* the cutoff, so together with the features (which
    use lines strictly before the cutoff) every line of the log is either history or future,
    never both and never neither.

    - ``"lapsed"``: net spend in the window ≤ 0 (no purchase, or returns cancel it out).
    - Among the others (the buyers), with money thresholds ``t1 ≤ t2 ≤ t3`` = the
      ``quantiles`` of their spend (linear interpolation): ``"low"`` if spend ≤ t1,
      ``"mid"`` if ≤ t2, ``"high"`` if ≤ t3, else ``"top"``. Thresholds come from the
      ``customers`` given (the feature table's), not from customers first seen in the window.

    Returns
    -------
    (tier, info):
        ``tier`` is a str Series named ``value_tier`` indexed like ``customers``; ``info`` is
        a JSON-serialisable dict for the manifest: horizon, cutoff, window end, quantiles,
        money thresholds, number of buyers and the count per tier.

    Raises
    ------
    ValueError
        Bad parameter, or the window runs past the end of the log (its labels would be
        wrong: customers would look lapsed only because the data stops).
    """
    owner = "future_value_tier"
    check_log(log, owner)
    cutoff = as_cutoff(cutoff, owner)

    def window_spend(start: pd.Timestamp, stop: pd.Timestamp) -> pd.Series:
        window = log.loc[(log[TIMESTAMP] >= start) & (log[TIMESTAMP] < stop)]
        return window.groupby(CUSTOMER_ID)[AMOUNT].sum()

    return value_tier_from_spend(
        window_spend, log[TIMESTAMP].max(), cutoff, customers, horizon_days=horizon_days, quantiles=quantiles
    )


def value_tier_from_spend(
    window_spend: Callable[[pd.Timestamp, pd.Timestamp], pd.Series],
    last_timestamp: pd.Timestamp,
    cutoff: pd.Timestamp,
    customers: pd.Index,
    *,
    horizon_days: float = 90,
    quantiles: Sequence[float] = (0.5, 0.8, 0.95),
) -> tuple[pd.Series, dict[str, object]]:
    """:func:`future_value_tier` for any engine's log: ``window_spend(start, end)`` is the net
    spend per customer id of the lines in ``[start, end)`` (the pandas or Spark aggregation),
    ``last_timestamp`` the log's last line. The tiers are made here, on the driver."""
    owner = "future_value_tier"
    horizon = positive_number(horizon_days, "horizon_days", owner)
    qs = _check_quantiles(quantiles, owner)
    customers = pd.Index(customers, name=CUSTOMER_ID)
    if not customers.is_unique:
        raise FactoryInputError(f"The 'customers' parameter of {owner} must not repeat a customer id.")
    end = cutoff + pd.Timedelta(days=horizon)
    if end > last_timestamp:
        raise FactoryInputError(
            f"The 'horizon_days' parameter of {owner} makes the label window "
            f"[{cutoff.isoformat()}, {end.isoformat()}) run past the end of the log "
            f"({last_timestamp.isoformat()}); use an earlier cutoff. "
            f"Got {horizon_days!r} instead."
        )

    spend = window_spend(cutoff, end).reindex(customers, fill_value=0.0)
    spend = spend.astype("float64")
    buyers = spend > 0
    codes = np.zeros(len(spend), dtype=np.int64)
    if buyers.any():
        thresholds = np.quantile(spend[buyers].to_numpy(), qs)
        # side="left": a spend equal to a threshold belongs to the lower tier (spend <= t).
        codes[buyers.to_numpy()] = 1 + np.searchsorted(thresholds, spend[buyers], side="left")
        money: list[float | None] = [float(t) for t in thresholds]
    else:
        money = [None] * len(qs)
    tier = pd.Series(np.asarray(VALUE_TIERS, dtype=object)[codes], index=customers)
    tier = tier.astype("str").rename("value_tier")

    counts = np.bincount(codes, minlength=len(VALUE_TIERS))
    info: dict[str, object] = {
        "rule": (
            "net spend in [cutoff, cutoff + horizon): lapsed if <= 0; otherwise low if "
            "<= thresholds[0], mid if <= thresholds[1], high if <= thresholds[2], else top; "
            "thresholds are the quantiles of the buyers' spend"
        ),
        "cutoff": cutoff.isoformat(),
        "window_end": end.isoformat(),
        "horizon_days": horizon_days,
        "quantiles": list(qs),
        "thresholds": money,
        "n_customers": len(customers),
        "n_buyers": int(buyers.sum()),
        "counts": {name: int(n) for name, n in zip(VALUE_TIERS, counts, strict=True)},
    }
    return tier, info
