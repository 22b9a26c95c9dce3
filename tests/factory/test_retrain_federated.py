"""Federated statistics in a retrain (issue 15): the fleet's noised per-store histograms weight
the stores, are compared with the challenger, merge sparse bins, and are named in the card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge_runtime.artifact import NumberReference, StringReference
from factory._federated import load_federated_stats
from factory.errors import FactoryInputError
from factory.retrain import read_champion

HORIZON = 30  # the shared champion_dir fixture (conftest.py) uses the same horizon
CHALLENGER_CUTOFF = "2011-07-01"


def _export(champion_dir: Path) -> tuple[dict[str, Any], str, str | None]:
    """An export shaped as central's, on the champion's bins: store A (weight 0.75) and B (0.25);
    the first number's bin 0 is sparse in both, and B has a negative noised count."""
    manifest = read_champion(champion_dir).manifest
    number = next(n for n, r in manifest.reference.items() if isinstance(r, NumberReference))
    string = next((n for n, r in manifest.reference.items() if isinstance(r, StringReference)), None)
    reference: dict[str, Any] = {}
    for name, ref in manifest.reference.items():
        if isinstance(ref, NumberReference):
            reference[name] = {"type": "number", "bin_edges": list(ref.bin_edges)}
        elif isinstance(ref, StringReference):
            reference[name] = {"type": "string", "categories": list(ref.categories)}
    k = len(reference[number]["bin_edges"]) - 1
    a = {number: [1] + [100] * (k - 1) + [0]}
    b = {number: [-2] + [40] * (k - 2) + [80] + [10]}
    if string is not None:
        m = len(reference[string]["categories"]) + 2
        a[string] = [50] * m
        b[string] = [10] * m
    stats = {
        "model_version": manifest.model_version,
        "source": "noised device reports (edge_runtime.privacy); no raw rows",
        "reference": reference,
        "stores": {
            "A": {"reports": 3, "epsilon_spent": 0.75, "rows": 900, "histograms": a, "noise_std": {number: 4.0}},
            "B": {"reports": 2, "epsilon_spent": 0.5, "rows": 300, "histograms": b, "noise_std": {number: 2.8}},
        },
        "fleet": {},
        "weights": {"A": 0.75, "B": 0.25},
    }
    return stats, number, string


def test_retrain_weights_stores_merges_the_sparse_bin_and_says_so(champion_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from factory.cli import main

    stats, number, _ = _export(champion_dir)
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(stats))
    code = main([
        "retrain", "--champion", str(champion_dir), "--cutoff", CHALLENGER_CUTOFF, "--time-budget-s", "3",
        "--resamples", "50", "--federated-stats", str(path), "--min-bin-share", "0.02", "--json",
    ])  # fmt: skip
    capsys.readouterr()
    assert code in (0, 3)
    written = sorted(p for p in champion_dir.parent.iterdir() if p != champion_dir)[-1]
    manifest = json.loads((written / "manifest.json").read_text())
    section = manifest["lineage"]["federated"]

    # by hand: each store's histogram as shares (negatives clamped at 0), weighted 0.75 / 0.25
    edges = stats["reference"][number]["bin_edges"]
    k = len(edges) - 1
    total_a = 1 + 100 * (k - 1)
    total_b = 40 * (k - 2) + 80 + 10
    share_a = [1 / total_a] + [100 / total_a] * (k - 1) + [0.0]
    share_b = [0.0] + [40 / total_b] * (k - 2) + [80 / total_b, 10 / total_b]
    fleet = [0.75 * x + 0.25 * y for x, y in zip(share_a, share_b, strict=True)]
    entry = section["inputs"][number]
    assert entry["stores"] == {"A": 0.75, "B": 0.25}
    assert entry["fleet_proportions"] == pytest.approx(fleet, abs=1e-12)
    assert section["stores"]["A"] == {"weight": 0.75, "reports": 3, "epsilon_spent": 0.75, "rows": 900}
    assert isinstance(entry["psi"], float) and entry["psi"] >= 0

    # bin 0 (fleet share < 2 %) merged into bin 1: its inner edge is gone, in the section and in
    # the challenger's drift reference (proportions from its own training rows)
    assert fleet[0] < 0.02 and all(s >= 0.02 for s in fleet[1:-1])
    assert entry["sparse_bins"] == [0]
    assert entry["merged_bin_edges"] == [edges[0], *edges[2:]]
    assert entry["rebinned"] is True
    ref = manifest["reference"][number]
    assert ref["bin_edges"] == entry["merged_bin_edges"]
    assert len(ref["proportions"]) == len(ref["bin_edges"]) and sum(ref["proportions"]) == pytest.approx(1.0)

    assert isinstance(read_champion(written).manifest.reference[number], NumberReference)  # still a valid manifest
    from edge_runtime.classifier import Classifier

    Classifier.load(written)  # signed and loadable by the device with the merged bins

    card = (written / "card.md").read_text()
    print(card[card.index("## Fleet") :])
    assert "## Fleet statistics (noised, federated)" in card
    assert "never raw rows" in card and "A: weight 0.75" in card and "B: weight 0.25" in card
    assert f"{k} → {k - 1} bins" in card


def test_malformed_or_foreign_export_is_refused_naming_the_field(champion_dir: Path, tmp_path: Path) -> None:
    from factory.retrain import retrain

    manifest = read_champion(champion_dir).manifest
    stats, number, _ = _export(champion_dir)

    broken = json.loads(json.dumps(stats))
    del broken["weights"]
    with pytest.raises(FactoryInputError, match="weights: missing"):
        retrain(champion_dir, federated_stats=broken, out_dir=tmp_path)

    broken = json.loads(json.dumps(stats))
    broken["stores"]["B"]["histograms"][number] = [1, 2]
    with pytest.raises(FactoryInputError, match=f"stores.B.histograms.{number}"):
        load_federated_stats(broken, manifest)

    foreign = json.loads(json.dumps(stats))
    foreign["reference"][number]["bin_edges"][1] += 0.5
    with pytest.raises(FactoryInputError, match=f"reference.{number}.bin_edges: not the champion"):
        load_federated_stats(foreign, manifest)

    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(FactoryInputError, match="cannot read"):
        load_federated_stats(path, manifest)
    assert list(tmp_path.iterdir()) == [path]  # nothing built
