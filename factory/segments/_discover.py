"""Segment discovery: dormant rule first, then clusters of the active customers, profiled and named.

Dormant customers are decided by a rule *before* clustering, not by the clustering: a customer
with ``is_dormant == "yes"`` (no log line in the N days before the cutoff) is in the segment
``"dormant"``; only the others are scaled and clustered. Reasons: most of what separates a
dormant customer is one column (recency), which would otherwise dominate the clusters of the
customers a till actually sees; and the rule must be exactly reproducible and countable. The
classifier then *learns* every segment, dormant included (``is_dormant`` and ``recency_days`` are
among its inputs, so the rule is easy to learn, and the test metrics show how well it did). The
count in the manifest (``segments.dormant.count``) is ``(table.is_dormant == "yes").sum()``.

Without an ``is_dormant`` column the rule falls back to ``recency_days > dormant_days`` when the
table has ``recency_days``; a table with neither has no dormant rule and says so in the report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from factory._data import MIN_ROWS_PER_CLASS
from factory.errors import FactoryInputError

from ._cluster import DEFAULT_K_RANGE, choose_and_fit, scale_features
from ._profile import DORMANT, NAMING_RULES, json_profiles, name_segments, profile_segments

__all__ = ["SegmentResult", "build_segment_table", "discover_segments"]

DORMANT_COLUMN = "is_dormant"
SCALING = "numeric columns; median-imputed; sign(x)*log1p(|x|); standardised (mean 0, variance 1)"


@dataclass
class SegmentResult:
    """Segment name per row (aligned with the input frame) and the report for the manifest."""

    labels: pd.Series
    report: dict[str, Any]

    @property
    def label_rule(self) -> dict[str, Any]:
        r = self.report
        return {
            "kind": "clusters",
            "method": r["method"],
            "criterion": r["criterion"],
            "chosen_k": r["chosen_k"],
            "features": r["features"],
            "scaling": r["scaling"],
            "dormant_rule": r["dormant"]["rule"],
            "naming_rules": r["naming_rules"],
        }

    @property
    def profiles(self) -> dict[str, Any]:
        return dict(self.report["profiles"])


def _dormant_mask(frame: pd.DataFrame, dormant_days: float | None) -> tuple[pd.Series | None, dict[str, Any]]:
    if DORMANT_COLUMN in frame.columns:
        mask = frame[DORMANT_COLUMN].astype(str).str.lower().eq("yes")
        rule = f"{DORMANT_COLUMN} == 'yes' (no interaction in the dormant window before the cutoff)"
        if dormant_days is not None:
            rule += f"; dormant window {dormant_days:g} days"
        return mask, {"applied": True, "rule": rule, "column": DORMANT_COLUMN}
    if "recency_days" in frame.columns and dormant_days is not None:
        mask = pd.to_numeric(frame["recency_days"], errors="coerce").gt(dormant_days)
        return mask, {"applied": True, "rule": f"recency_days > {dormant_days:g}", "column": "recency_days"}
    return None, {
        "applied": False,
        "rule": None,
        "reason": f"the table has neither an {DORMANT_COLUMN!r} column nor 'recency_days'; no dormant rule",
    }


def discover_segments(
    frame: pd.DataFrame,
    *,
    exclude: Sequence[str] = (),
    n_segments: int | None = None,
    k_range: tuple[int, int] = DEFAULT_K_RANGE,
    method: str = "kmeans",
    dormant_days: float | None = 30,
    seed: int = 0,
) -> SegmentResult:
    """Name a segment for every row of a customer table.

    ``exclude`` names columns that are not features (ids, a target). Numeric columns are
    clustered (see ``_cluster``); string columns only appear in the profiles.
    """
    started = time.perf_counter()
    features = frame.drop(columns=[c for c in exclude if c in frame.columns])
    numeric = [
        str(c)
        for c in features.columns
        if pd.api.types.is_numeric_dtype(features[c])
        and not pd.api.types.is_bool_dtype(features[c])
        and features[c].notna().any()
    ]
    strings = [str(c) for c in features.columns if str(c) not in numeric]
    if not numeric:
        raise FactoryInputError("--labels clusters needs at least one numeric column to cluster; the table has none")
    mask, dormant = _dormant_mask(features, dormant_days)
    active = features.index if mask is None else features.index[~mask.to_numpy()]
    if len(active) < 10:
        raise FactoryInputError(f"only {len(active)} non-dormant customers to cluster; need at least 10")
    matrix = scale_features(features.loc[active], numeric)
    clusters, cluster_report = choose_and_fit(matrix, method=method, k_range=k_range, n_segments=n_segments, seed=seed)
    sizes = np.bincount(clusters)
    if sizes.min() < MIN_ROWS_PER_CLASS:
        raise FactoryInputError(
            f"clustering into {cluster_report.chosen_k} segments left one with {int(sizes.min())} customers; "
            f"each segment needs at least {MIN_ROWS_PER_CLASS} (train, validation and test): "
            "ask for fewer with --n-segments"
        )

    # plain object values: cluster numbers (int) and the rule segment (str) side by side
    values = np.full(len(features), DORMANT, dtype=object)
    values[features.index.get_indexer(active)] = [int(c) for c in clusters]
    keys = pd.Series(values, index=features.index, dtype=object)
    profiles = profile_segments(features, keys, numeric, strings, active)
    cluster_keys = sorted(int(k) for k in np.unique(clusters))
    names = name_segments(profiles, cluster_keys)
    if mask is not None and mask.any():
        names[DORMANT] = DORMANT
        profiles[DORMANT]["naming"] = {"rule": "dormant", "condition": dormant["rule"], "name": DORMANT}
    labels = keys.map(lambda k: names[k]).astype(str).rename("segment")
    dormant["count"] = int(mask.sum()) if mask is not None else 0
    dormant["learned_by_classifier"] = True
    report = {
        **cluster_report.to_dict(),
        "features": numeric,
        "scaling": SCALING,
        "n_customers": int(len(features)),
        "n_clustered": int(len(active)),
        "dormant": dormant,
        "names": {str(k): names[k] for k in cluster_keys},
        "counts": {name: int((labels == name).sum()) for name in sorted(set(labels))},
        "profiles": json_profiles(profiles, names),
        "naming_rules": [{"name": r.name, "condition": r.condition} for r in NAMING_RULES],
        "seconds": round(time.perf_counter() - started, 3),
    }
    return SegmentResult(labels=labels, report=report)


def build_segment_table(
    path: str | Path | None = None,
    *,
    dormant_days: float = 30,
    cutoff: pd.Timestamp | str | None = None,
    engine: str = "pandas",
    spark_master: str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Transaction log → RFM+X table for segment discovery (no label window needed).

    The cutoff defaults to midnight after the log's last line, so every line is history: the
    segments describe the customers as they are at the end of the data. ``engine="spark"``
    builds the table with PySpark (``factory.features.load_log``).
    """
    from factory.features._table import feature_job

    started = time.perf_counter()
    _, features, info = feature_job(
        path,
        cutoff if cutoff is not None else (lambda first, last: last.normalize() + pd.Timedelta(days=1)),
        dormant_days=dormant_days,
        dormant_note="dormant customers are their own segment, never dropped",
        engine=engine,
        spark_master=spark_master,
    )
    table = features.reset_index()
    table["customer_id"] = table["customer_id"].astype("str")
    info["build_seconds"] = round(time.perf_counter() - started, 3)
    return table, info
