"""Federated statistics for a retrain (issue 15): the fleet's noised per-store histograms.

Central combines the devices' noised drift reports into ``GET /v1/privacy/federated-stats``
(``edgeseg-central privacy export``, docs/PRIVACY.md); never raw rows. A retrain given that
export (``retrain(..., federated_stats=...)``, ``--federated-stats FILE``):

* **weights stores**: per input, each store's noised histogram (negative sums clamped at 0) is
  normalised to shares and the fleet's shares are the weighted mean of those, each store
  weighted by its ``weights`` entry in the export (its share of the fleet's rows), renormalised
  over the stores that reported the input. A small store thus counts by its size, and its
  noise (large relative to its few rows) does not dominate.
* **compares**: the challenger's training rows, binned on the export's (the champion's) bins,
  against those fleet shares: PSI per input (:func:`edge_runtime.drift.psi`).
* **picks bins**: for a number, reference bins whose fleet share is below ``min_share`` are
  merged into their smaller neighbour (repeatedly) — a sparse bin gains relatively more DP noise
  at the devices, so fewer, fuller bins keep PSI usable. When a merge happens the challenger's
  drift reference for that input gets the merged edges (proportions recomputed from its own
  training rows); devices and central read bins from the manifest, so nothing else changes.

Everything lands in the manifest's ``lineage.federated`` and the card's "Fleet statistics
(noised, federated)" section.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge_runtime.artifact import Manifest, NumberReference, StringReference
from edge_runtime.drift import psi
from factory.errors import FactoryInputError

__all__ = ["DEFAULT_MIN_SHARE", "federated_card_blocks", "federated_section", "load_federated_stats"]

#: Fleet share below which a number's reference bin is merged into a neighbour.
DEFAULT_MIN_SHARE = 0.02


def _bad(field: str, why: str) -> FactoryInputError:
    return FactoryInputError(f"federated stats: {field}: {why}")


def _number_list(value: Any, field: str) -> list[float]:
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise _bad(field, "must be a list of finite numbers")
    return [float(v) for v in value]


def _slots(ref: Mapping[str, Any]) -> int:
    if ref["type"] == "number":
        return len(ref["bin_edges"])  # k bins, then missing
    return len(ref["categories"]) + 2  # categories, other, missing


def load_federated_stats(source: str | Path | Mapping[str, Any], manifest: Manifest) -> dict[str, Any]:
    """The export ``source`` (a JSON file or its mapping), validated against ``manifest``'s bins.

    Raises FactoryInputError naming the field when it is malformed, or when its reference bins
    are not the manifest's (the champion's) reference bins.
    """
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        try:
            data = json.loads(Path(source).read_text())
        except (OSError, ValueError) as exc:
            raise FactoryInputError(f"federated stats: cannot read {source}: {exc}") from exc
    if not isinstance(data, dict):
        raise _bad("(top level)", "must be a JSON object")
    for key in ("model_version", "reference", "stores", "weights"):
        if key not in data:
            raise _bad(key, "missing")
    reference, stores, weights = data["reference"], data["stores"], data["weights"]
    if not isinstance(reference, dict) or not reference:
        raise _bad("reference", "must be a non-empty object of inputs")
    if not isinstance(stores, dict) or not stores:
        raise _bad("stores", "must be a non-empty object of stores")
    if not isinstance(weights, dict):
        raise _bad("weights", "must be an object of store -> weight")
    for name, ref in reference.items():
        own = manifest.reference.get(name)
        if not isinstance(ref, dict) or ref.get("type") not in ("number", "string"):
            raise _bad(f"reference.{name}.type", "must be 'number' or 'string'")
        if isinstance(own, NumberReference):
            edges = _number_list(ref.get("bin_edges"), f"reference.{name}.bin_edges")
            if (
                ref["type"] != "number"
                or not np.allclose(edges, own.bin_edges, rtol=1e-9, atol=0)
                or len(edges) != len(own.bin_edges)
            ):
                raise _bad(f"reference.{name}.bin_edges", f"not the champion {manifest.model_version}'s bins")
        elif isinstance(own, StringReference):
            if ref["type"] != "string" or list(ref.get("categories") or []) != list(own.categories):
                raise _bad(f"reference.{name}.categories", f"not the champion {manifest.model_version}'s categories")
        else:
            raise _bad(f"reference.{name}", f"not an input of the champion {manifest.model_version}")
    for store, entry in stores.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("histograms"), dict):
            raise _bad(f"stores.{store}.histograms", "missing or not an object")
        for name, counts in entry["histograms"].items():
            field = f"stores.{store}.histograms.{name}"
            if name not in reference:
                raise _bad(field, "input not in the export's reference")
            if len(_number_list(counts, field)) != _slots(reference[name]):
                raise _bad(field, f"needs {_slots(reference[name])} slots, got {len(counts)}")
        weight = weights.get(store)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 1:
            raise _bad(f"weights.{store}", "missing or not a number in [0, 1]")
    return data


def _shares(counts: list[float]) -> list[float]:
    clamped = [max(c, 0.0) for c in counts]
    total = sum(clamped)
    return [c / total if total else 0.0 for c in clamped]


def _number_slots(values: np.ndarray, edges: list[float]) -> list[int]:
    """Counts of ``values`` in the device's slots for ``edges``: k bins, then missing."""
    k = len(edges) - 1
    present = values[~np.isnan(values)]
    bins = np.clip(np.searchsorted(np.asarray(edges), present, side="right") - 1, 0, k - 1)
    return [int(c) for c in np.bincount(bins, minlength=k)] + [int(len(values) - len(present))]


def _string_slots(column: pd.Series, categories: list[str]) -> list[int]:
    index = {c: i for i, c in enumerate(categories)}
    counts = [0] * (len(categories) + 2)
    for value in column:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            counts[-1] += 1
        else:
            counts[index.get(str(value), len(categories))] += 1
    return counts


def merge_sparse_bins(edges: list[float], shares: list[float], min_share: float) -> tuple[list[float], list[float]]:
    """Merge bins (``shares``: one per bin, no missing slot) below ``min_share`` into their
    smaller neighbour until none is left or one bin remains; the merged edges and shares."""
    edges, shares = list(edges), list(shares)
    while len(shares) > 1:
        sparse = [i for i, s in enumerate(shares) if s < min_share]
        if not sparse:
            break
        i = min(sparse, key=lambda j: (shares[j], j))
        if i == 0:
            j = 1
        elif i == len(shares) - 1:
            j = i - 1
        else:
            j = i - 1 if shares[i - 1] < shares[i + 1] else i + 1
        lo = min(i, j)
        shares[lo : lo + 2] = [shares[lo] + shares[lo + 1]]
        del edges[lo + 1]  # the edge between the two bins
    return edges, shares


def federated_section(
    stats: Mapping[str, Any], reference: dict[str, Any], train: pd.DataFrame, *, min_share: float = DEFAULT_MIN_SHARE
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``lineage.federated`` section and the challenger's (possibly re-binned) reference.

    ``reference`` is the challenger's manifest reference (dicts), ``train`` the rows it was
    built from (normalised inputs), ``stats`` a validated export.
    """
    stores: dict[str, Any] = stats["stores"]
    weights: dict[str, float] = {s: float(stats["weights"][s]) for s in stores}
    new_reference = {name: dict(ref) for name, ref in reference.items()}
    inputs: dict[str, Any] = {}
    n = len(train)
    for name, ref in stats["reference"].items():
        reporting = [s for s in sorted(stores) if name in stores[s]["histograms"]]
        total_weight = sum(weights[s] for s in reporting)
        if not reporting or total_weight <= 0 or name not in train.columns:
            continue
        used = {s: weights[s] / total_weight for s in reporting}
        slots = _slots(ref)
        fleet = [0.0] * slots
        for s in reporting:
            for i, share in enumerate(_shares([float(c) for c in stores[s]["histograms"][name]])):
                fleet[i] += used[s] * share
        entry: dict[str, Any] = {
            "type": ref["type"],
            "stores": used,
            "fleet_proportions": fleet,
            "noise_std": {s: stores[s].get("noise_std", {}).get(name) for s in reporting},
        }
        if ref["type"] == "number":
            edges = [float(e) for e in ref["bin_edges"]]
            train_counts = _number_slots(train[name].to_numpy(dtype=np.float64), edges)
            merged, _ = merge_sparse_bins(edges, fleet[:-1], min_share)
            entry["bin_edges"] = edges
            entry["sparse_bins"] = [i for i, s in enumerate(fleet[:-1]) if s < min_share]
            entry["merged_bin_edges"] = merged
            entry["rebinned"] = merged != edges
            if merged != edges:
                counts = _number_slots(train[name].to_numpy(dtype=np.float64), merged)
                new_reference[name] = {
                    "type": "number",
                    "bin_edges": merged,
                    "proportions": [c / n if n else 0.0 for c in counts],
                }
        else:
            train_counts = _string_slots(train[name], [str(c) for c in ref["categories"]])
        entry["psi"] = psi(fleet, train_counts)
        inputs[name] = entry
    section = {
        "source": stats.get("source", "noised device reports; no raw rows"),
        "model_version": stats["model_version"],
        "stores": {
            s: {
                "weight": weights[s],
                "reports": stores[s].get("reports"),
                "epsilon_spent": stores[s].get("epsilon_spent"),
                "rows": stores[s].get("rows"),
            }
            for s in sorted(stores)
        },
        "weighting": "per input: each store's noised histogram (clamped at 0) as shares, averaged with the "
        "export's store weights (share of fleet rows) renormalised over the reporting stores",
        "psi": "challenger training rows on the export's bins vs the weighted fleet shares (edge_runtime.drift.psi)",
        "min_share": min_share,
        "inputs": inputs,
    }
    return section, new_reference


def federated_card_blocks(section: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The card's "Fleet statistics (noised, federated)" section."""
    stores = section["stores"]
    inputs = section["inputs"]
    rebinned = [n for n, e in inputs.items() if e.get("rebinned")]
    rows = [
        (
            name,
            f"{e['psi']:.4f}",
            ", ".join(f"{s} {w:.2f}" for s, w in e["stores"].items()),
            (
                f"bins {e['sparse_bins']} below {section['min_share']:.0%}: {len(e['bin_edges']) - 1} → "
                f"{len(e['merged_bin_edges']) - 1} bins"
                if e.get("rebinned")
                else "-"
            ),
        )
        for name, e in inputs.items()
    ]
    listed = ", ".join(f"{s}: weight {v['weight']:.2f}, ε spent {v['epsilon_spent']}" for s, v in stores.items())
    return [
        ("h", 2, "Fleet statistics (noised, federated)"),
        (
            "p",
            f"Used the fleet's federated statistics for {section['model_version']} from "
            f"{len(stores)} stores ({listed}), "
            f"combined at central from the devices' noised reports, never raw rows. Stores were "
            f"weighted by their share of the fleet's rows ({section['weighting']}). PSI compares the "
            f"challenger's training rows with those fleet shares on the champion's bins. Number bins "
            f"with a fleet share below {section['min_share']:.0%} were merged into a neighbour in this "
            f"model's drift reference (sparse bins carry relatively more noise): "
            f"{', '.join(rebinned) if rebinned else 'none needed'}.",
        ),
        ("table", ["input", "PSI vs fleet", "stores (weight)", "bins"], [list(r) for r in rows]),
    ]
