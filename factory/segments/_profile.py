"""Profile each segment and name it from its profile by transparent, ordered rules.

A profile is what a reader needs to trust a name: size, the median of every numeric feature,
where that median sits among all clustered customers (its percentile), the most common value
of every string column, and the features that distinguish the segment most — the standardised
median difference against the rest of the customers::

    effect(f) = (median of f in the segment - median of f in the rest) / robust scale of f

with robust scale = IQR / 1.349 over all clustered customers (the standard deviation when the
IQR is 0, and 1 when both are 0).

Names come from ``NAMING_RULES``, tried in order; the first rule whose condition holds names the
segment, and the rule and the numbers it used are stored with the profile. Rules read RFM+X
columns (``monetary``, ``frequency``, ``recency_days``, ``tenure_days``, ``avg_basket_value``,
``return_rate``); a rule whose columns the table lacks is skipped. A table without them (any
customer table) falls back to a descriptive name from the two most distinguishing features,
e.g. "high Age, low Family_Size". Names are made unique by adding the most distinguishing
feature in brackets, then a number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["DORMANT", "NAMING_RULES", "NamingRule", "json_profiles", "name_segments", "profile_segments"]

DORMANT = "dormant"
N_DISTINGUISHING = 3


@dataclass(frozen=True)
class NamingRule:
    name: str
    condition: str  # the rule in words, as written to the manifest and the card
    columns: tuple[str, ...]
    holds: Callable[[dict[str, Any], dict[str, Any]], bool]  # (profile, context) -> bool


def _pct(profile: dict[str, Any], column: str) -> float:
    return float(profile["percentiles"][column])


NAMING_RULES: tuple[NamingRule, ...] = (
    NamingRule(
        "high-value loyal",
        "the highest median monetary of all segments, at or above the 75th percentile, "
        "and median frequency at or above the 60th percentile",
        ("monetary", "frequency"),
        lambda p, ctx: p["key"] == ctx["top_monetary"] and _pct(p, "monetary") >= 0.75 and _pct(p, "frequency") >= 0.6,
    ),
    NamingRule(
        "high-value",
        "the highest median monetary of all segments, at or above the 75th percentile",
        ("monetary",),
        lambda p, ctx: p["key"] == ctx["top_monetary"] and _pct(p, "monetary") >= 0.75,
    ),
    NamingRule(
        "new",
        "the lowest median tenure_days of all segments, at or below the 25th percentile (first purchase recently)",
        ("tenure_days",),
        lambda p, ctx: p["key"] == ctx["newest"] and _pct(p, "tenure_days") <= 0.25,
    ),
    NamingRule(
        "at risk",
        "median recency_days at or above the 75th percentile (not seen for a long while, not yet dormant)",
        ("recency_days",),
        lambda p, ctx: _pct(p, "recency_days") >= 0.75,
    ),
    NamingRule(
        "frequent returners",
        "median return_rate at least 0.10 (a tenth of the value bought is returned)",
        ("return_rate",),
        lambda p, ctx: p["medians"]["return_rate"] >= 0.10,
    ),
    NamingRule(
        "price-sensitive occasional",
        "median frequency and median avg_basket_value both at or below the 40th percentile",
        ("frequency", "avg_basket_value"),
        lambda p, ctx: _pct(p, "frequency") <= 0.4 and _pct(p, "avg_basket_value") <= 0.4,
    ),
    NamingRule(
        "occasional",
        "median frequency at or below the 40th percentile",
        ("frequency",),
        lambda p, ctx: _pct(p, "frequency") <= 0.4,
    ),
    NamingRule(
        "loyal",
        "median frequency at or above the 60th percentile",
        ("frequency",),
        lambda p, ctx: _pct(p, "frequency") >= 0.6,
    ),
    NamingRule(
        "regular", "RFM+X features present and no rule above holds", ("frequency", "monetary"), lambda p, c: True
    ),
)


def _robust_scale(values: pd.Series) -> float:
    present = values.dropna()
    if present.empty:
        return 1.0
    iqr = float(present.quantile(0.75) - present.quantile(0.25)) / 1.349
    if iqr > 0:
        return iqr
    std = float(present.std(ddof=0))
    return std if std > 0 else 1.0


def _median(values: pd.Series) -> float | None:
    present = values.dropna()
    return float(present.median()) if len(present) else None


def profile_segments(
    frame: pd.DataFrame, labels: pd.Series, numeric: list[str], strings: list[str], population: pd.Index
) -> dict[Any, dict[str, Any]]:
    """One profile per distinct label; percentiles and effects are against ``population`` rows
    (the clustered customers): a cluster is compared with the other clustered customers, and a
    rule-made segment such as dormant with all of them, on the same scale."""
    reference = frame.loc[population]
    scales = {c: _robust_scale(reference[c]) for c in numeric}
    profiles: dict[Any, dict[str, Any]] = {}
    total = len(frame)
    for key in pd.unique(labels):
        inside = labels == key
        rows = frame[inside.to_numpy()]
        rest = reference[~inside.loc[population].to_numpy()]
        medians = {c: _median(rows[c]) for c in numeric}
        percentiles = {}
        effects: list[dict[str, Any]] = []
        for c in numeric:
            median = medians[c]
            if median is None:
                continue
            present = reference[c].dropna()
            # mid-rank percentile, so a median on a tied value (frequency 2) is not pushed up
            below, equal = float((present < median).mean()), float((present == median).mean())
            percentiles[c] = below + equal / 2 if len(present) else 0.5
            rest_median = _median(rest[c])
            if rest_median is not None:
                effect = (median - rest_median) / scales[c]
                effects.append(
                    {"feature": c, "effect": round(effect, 4), "segment_median": medians[c], "rest_median": rest_median}
                )
        effects.sort(key=lambda e: -abs(e["effect"]))
        profiles[key] = {
            "key": key,
            "count": int(inside.sum()),
            "share": float(inside.sum() / total),
            "medians": {c: v for c, v in medians.items() if v is not None},
            "percentiles": percentiles,
            "top_categories": {c: str(rows[c].mode().iloc[0]) for c in strings if c in rows and rows[c].notna().any()},
            "distinguishing": effects[:N_DISTINGUISHING],
        }
    return profiles


def _describe(effect: dict[str, Any]) -> str:
    return f"{'high' if effect['effect'] > 0 else 'low'} {effect['feature']}"


def name_segments(profiles: dict[Any, dict[str, Any]], cluster_keys: list[Any]) -> dict[Any, str]:
    """Name every cluster key by the first rule that holds; unique, never "dormant"."""
    columns = set()
    for key in cluster_keys:
        columns |= set(profiles[key]["medians"])
    monetary = {k: profiles[k]["medians"].get("monetary") for k in cluster_keys}
    tenure = {k: profiles[k]["medians"].get("tenure_days") for k in cluster_keys}
    context = {
        "top_monetary": max((k for k in monetary if monetary[k] is not None), key=lambda k: monetary[k], default=None),
        "newest": min((k for k in tenure if tenure[k] is not None), key=lambda k: tenure[k], default=None),
    }
    names: dict[Any, str] = {}
    for key in cluster_keys:
        profile = profiles[key]
        chosen = None
        for rule in NAMING_RULES:
            if all(c in profile["medians"] for c in rule.columns) and rule.holds(profile, context):
                chosen = rule
                break
        if chosen is not None:
            names[key] = chosen.name
            profile["naming"] = {"rule": chosen.name, "condition": chosen.condition, "columns": list(chosen.columns)}
        else:
            described = [_describe(e) for e in profile["distinguishing"][:2]]
            names[key] = ", ".join(described) or "segment"
            profile["naming"] = {
                "rule": "descriptive",
                "condition": "no RFM+X rule applies: the two most distinguishing features (standardised median "
                "difference vs the rest)",
                "columns": [e["feature"] for e in profile["distinguishing"][:2]],
            }
    # unique: bracket the most distinguishing feature the rule did not already use, then number
    for name in {n for n in names.values() if list(names.values()).count(n) > 1}:
        for key in [k for k in cluster_keys if names[k] == name]:
            used = set(profiles[key]["naming"]["columns"])
            extra = next((e for e in profiles[key]["distinguishing"] if e["feature"] not in used), None)
            if extra is not None:
                names[key] = f"{name} ({_describe(extra)})"
    seen: dict[str, int] = {}
    for key in cluster_keys:
        base = names[key] if names[key] != DORMANT else "dormant-like"
        seen[base] = seen.get(base, 0) + 1
        names[key] = base if seen[base] == 1 else f"{base} {seen[base]}"
    for key in cluster_keys:
        profiles[key]["naming"]["name"] = names[key]
    return names


def json_profiles(profiles: dict[Any, dict[str, Any]], names: dict[Any, str]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, profile in profiles.items():
        entry = {k: v for k, v in profile.items() if k != "key"}
        entry["cluster"] = None if isinstance(key, str) else int(key)
        out[names[key]] = entry
    return out
