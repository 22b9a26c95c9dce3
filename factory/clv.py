"""The customer-lifetime-value baseline a retail analyst would reach for: BG/NBD + Gamma-Gamma.

BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way") models how many
purchases a customer makes while "alive" and when they drop out; Gamma-Gamma (Fader & Hardie
2013) the mean spend per purchase. Together they give each customer's expected spend over the
next ``horizon_days``; cut at the value-tier thresholds it is a *tier prediction* to hold the
default job's model against (issue 13: "the default job, honestly anchored").

Why our own ~100 lines rather than a library: ``lifetimes`` 0.11.3 (last release 2020-07, the
project archived) imports with our pins (pandas 3.1, numpy 2.4) but its BG/NBD conditional
expectation returned NaN for some customers here; ``btyd`` (0.1b3) is not on the package index
this project installs from; ``pymc-marketing`` would bring pymc/pytensor (a C-compiling backend)
into the factory for two maximum-likelihood fits. Both fits below are the published
log-likelihoods maximised with scipy (L-BFGS-B on log-parameters). On the whole CDNOW log (23.5k
customers, 39-week calibration, weeks) the fits give r 0.252, α 4.77, a 0.745, b 2.21 and p 6.27,
q 3.63, γ 15.0 — the published estimates on its 1/10 sample are r 0.243, α 4.414, a 0.793,
b 2.426 and p 6.25, q 3.74, γ 15.44 (tests/factory/test_clv.py holds it to them).

Summary per customer, in days (the ``lifetimes`` convention): ``frequency`` = purchase days − 1
(repeat purchases), ``recency`` = days from the first to the last purchase day, ``T`` = days from
the first purchase day to the cutoff, ``monetary`` = mean net spend of the repeat purchase days.
A purchase day is a day with positive net spend (returns subtract).

Tier rule (stated in the report): ``lapsed`` when the expected number of purchases in the
horizon is below ``LAPSED_EXPECTED_PURCHASES``, otherwise the expected spend cut at the label's
own thresholds (low / mid / high / top).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import optimize, special

if TYPE_CHECKING:
    from factory._stages import Dataset
    from factory._verify import Verified

__all__ = [
    "LAPSED_EXPECTED_PURCHASES",
    "BetaGeo",
    "GammaGamma",
    "clv_tiers",
    "default_job_baseline",
    "rfm_summary",
]

LAPSED_EXPECTED_PURCHASES = 0.5


def rfm_summary(log: pd.DataFrame, cutoff: pd.Timestamp, *, customer: str, timestamp: str, amount: str) -> pd.DataFrame:
    """``frequency``, ``recency``, ``T``, ``monetary`` per customer from lines strictly before
    ``cutoff`` (customers without a positive purchase day there are left out)."""
    before = log[log[timestamp] < cutoff]
    daily = before.groupby([customer, before[timestamp].dt.normalize()], observed=True)[amount].sum()
    daily = daily[daily > 0].reset_index()
    daily.columns = ["customer", "day", "spend"]
    grouped = daily.groupby("customer", observed=True)
    first, last = grouped["day"].min(), grouped["day"].max()
    summary = pd.DataFrame(
        {
            "frequency": grouped.size() - 1,
            "recency": (last - first).dt.days.astype(float),
            "T": (cutoff.normalize() - first).dt.days.astype(float),
        }
    )
    repeat = daily[daily["day"] > daily["customer"].map(first)]
    summary["monetary"] = repeat.groupby("customer", observed=True)["spend"].mean().reindex(summary.index).fillna(0.0)
    return summary


def _fit(negative_ll: Callable[[np.ndarray], float], n_params: int) -> np.ndarray:
    result = optimize.minimize(
        negative_ll,
        x0=np.zeros(n_params),
        method="L-BFGS-B",
        bounds=[(-10.0, 10.0)] * n_params,
    )
    fitted: np.ndarray = np.exp(np.asarray(result.x, dtype=float))
    return fitted


@dataclass(frozen=True)
class BetaGeo:
    """Fitted BG/NBD parameters (r, alpha: purchase rate; a, b: dropout)."""

    r: float
    alpha: float
    a: float
    b: float

    @staticmethod
    def log_likelihood(params: Sequence[float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = params
        a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
        a2 = special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b) - special.gammaln(a + b + x)
        a3 = -(r + x) * np.log(alpha + T)
        repeat = x > 0
        a4 = np.where(
            repeat,
            np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x),
            -np.inf,
        )
        out: np.ndarray = a1 + a2 + np.logaddexp(a3, a4)
        return out

    @classmethod
    def fit(cls, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> BetaGeo:
        x, t_x, age = (np.asarray(v, dtype=float) for v in (frequency, recency, T))

        def negative(log_params: np.ndarray) -> float:
            return -float(np.sum(cls.log_likelihood(np.exp(log_params), x, t_x, age)))

        r, alpha, a, b = _fit(negative, 4)
        return cls(float(r), float(alpha), float(a), float(b))

    def expected_purchases(self, t: float, frequency: np.ndarray, recency: np.ndarray, T: np.ndarray) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] (the paper's equation 10)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        x, t_x, age = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        hyper = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + age + t))
        first = (a + b + x - 1) / (a - 1)
        second = 1 - ((alpha + age) / (alpha + age + t)) ** (r + x) * hyper
        alive_odds = np.where(x > 0, a / np.maximum(b + x - 1, 1e-12) * ((alpha + age) / (alpha + t_x)) ** (r + x), 0)
        out: np.ndarray = first * second / (1 + alive_odds)
        return out


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma spend parameters (p, q, gamma)."""

    p: float
    q: float
    gamma: float

    @classmethod
    def fit(cls, frequency: np.ndarray, monetary: np.ndarray) -> GammaGamma:
        x, m = np.asarray(frequency, dtype=float), np.asarray(monetary, dtype=float)
        keep = (x > 0) & (m > 0)
        x, m = x[keep], m[keep]

        def negative(log_params: np.ndarray) -> float:
            p, q, g = np.exp(log_params)
            ll = (
                special.gammaln(p * x + q)
                - special.gammaln(p * x)
                - special.gammaln(q)
                + q * np.log(g)
                + (p * x - 1) * np.log(m)
                + p * x * np.log(x)
                - (p * x + q) * np.log(g + m * x)
            )
            return -float(np.sum(ll))

        p, q, g = _fit(negative, 3)
        return cls(float(p), float(q), float(g))

    def expected_spend(self, frequency: np.ndarray, monetary: np.ndarray) -> np.ndarray:
        """E[mean spend per purchase | x, m] (population mean for customers without repeats)."""
        x, m = np.asarray(frequency, dtype=float), np.asarray(monetary, dtype=float)
        population = self.p * self.gamma / (self.q - 1) if self.q > 1 else float(np.mean(m[x > 0]))
        conditional = self.p * (self.gamma + x * m) / (self.p * x + self.q - 1)
        out: np.ndarray = np.where(x > 0, conditional, population)
        return out


def clv_tiers(
    summary: pd.DataFrame, horizon_days: float, thresholds: Sequence[float], *, fit_on: pd.Index | None = None
) -> tuple[pd.Series, dict[str, object]]:
    """Predicted value tier per customer of ``summary`` (fitted on ``fit_on`` rows, default all).

    Returns the tiers and a report (parameters, rule) for the card / benchmark.
    """
    train = summary if fit_on is None else summary.loc[fit_on]
    bg = BetaGeo.fit(train["frequency"], train["recency"], train["T"])
    gg = GammaGamma.fit(train["frequency"], train["monetary"])
    purchases = bg.expected_purchases(horizon_days, summary["frequency"], summary["recency"], summary["T"])
    spend = purchases * gg.expected_spend(summary["frequency"], summary["monetary"])
    low, mid, high = (float(t) for t in thresholds)
    tiers = np.select(
        [purchases < LAPSED_EXPECTED_PURCHASES, spend <= low, spend <= mid, spend <= high],
        ["lapsed", "low", "mid", "high"],
        default="top",
    )
    report: dict[str, object] = {
        "bg_nbd": {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b},
        "gamma_gamma": {"p": gg.p, "q": gg.q, "gamma": gg.gamma},
        "rule": (
            f"lapsed if expected purchases in {horizon_days:g} days < {LAPSED_EXPECTED_PURCHASES}; otherwise "
            f"expected spend (BG/NBD purchases x Gamma-Gamma mean spend) cut at {list(thresholds)}"
        ),
    }
    return pd.Series(tiers, index=summary.index, name="clv_tier"), report


def default_job_baseline(
    table: pd.DataFrame, info: Mapping[str, Any], *, id_column: str = "customer_id"
) -> Callable[[dict[str, Any], Dataset, Verified], dict[str, Any]]:
    """A ``build(before_write=...)`` hook for the default job: BG/NBD + Gamma-Gamma tiers of the
    build's test customers, scored against their true tiers, added to ``metrics.baseline`` so the
    card shows the CLV approach beside the exported model (per tier: where each one wins).

    ``table``/``info`` are ``build_value_tier_table()``'s; the model is fitted on every
    customer's history before the cutoff (no label is used).
    """
    from sklearn.metrics import accuracy_score, f1_score

    from factory.features import default_log_path, load_transactions
    from factory.features._columns import AMOUNT, CUSTOMER_ID, TIMESTAMP

    rule = info["thresholds"]
    thresholds, horizon = rule["thresholds"], float(rule["horizon_days"])

    def before_write(manifest: dict[str, Any], dataset: Dataset, verified: Verified) -> dict[str, Any]:
        log, _ = load_transactions(default_log_path())
        log[CUSTOMER_ID] = log[CUSTOMER_ID].astype(str)
        cutoff = pd.Timestamp(str(info["cutoff"]))
        summary = rfm_summary(log, cutoff, customer=CUSTOMER_ID, timestamp=TIMESTAMP, amount=AMOUNT)
        tiers, report = clv_tiers(summary, horizon, thresholds)
        test = dataset.split.test
        classes = list(dataset.classes)
        truth = np.asarray(dataset.labels[test], dtype=object)
        ids = table[id_column].astype(str).iloc[test].to_numpy()
        predicted = tiers.reindex(ids).fillna("lapsed").to_numpy(dtype=object)  # no purchase day: lapsed
        per = f1_score(truth, predicted, labels=classes, average=None, zero_division=0)
        manifest["metrics"].setdefault("baseline", {})["bg_nbd_gamma_gamma"] = {
            "description": "BG/NBD purchases x Gamma-Gamma spend (factory.clv), tiers cut at the label's thresholds",
            "test": {
                "accuracy": float(accuracy_score(truth, predicted)),
                "macro_f1": float(f1_score(truth, predicted, labels=classes, average="macro", zero_division=0)),
                "f1_per_class": {c: float(v) for c, v in zip(classes, per, strict=True)},
            },
            "model": report,
        }
        return manifest

    return before_write
