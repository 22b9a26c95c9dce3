"""The model card next to a real artifact: both files say what the manifest says, and the HTML is
self-contained with its three plots embedded as PNG data URIs."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

SECTIONS = [
    "Data",
    "Quality on held-out data",
    "Never worse than our own baselines (same rows)",
    "Explanations",
    "Preprocessing",
    "Budgets (target device)",
    "Search",
    "Parity (ONNX vs native)",
    "Segment profiles",
]


@pytest.fixture(scope="module")
def card(small_artifact: Path) -> tuple[dict[str, Any], str, str]:
    manifest = json.loads((small_artifact / "manifest.json").read_text())
    return manifest, (small_artifact / "card.md").read_text(), (small_artifact / "card.html").read_text()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_html_embeds_the_three_plots_and_needs_no_network(card: tuple[dict[str, Any], str, str]) -> None:
    _, _, html = card
    plots = dict(re.findall(r'<figure id="plot-(\w+)"><img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html))
    assert set(plots) == {"confusion", "importance", "pareto"}
    for data in plots.values():
        width, height = _png_size(base64.b64decode(data))
        assert width >= 300 and height >= 200
    assert "<script" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_both_cards_have_every_section(card: tuple[dict[str, Any], str, str]) -> None:
    _, markdown, html = card
    for section in SECTIONS:
        assert re.search(rf"^#+ {re.escape(section)}$", markdown, re.M), section
        assert re.search(rf"<h[23]>{re.escape(section)}</h[23]>", html), section


def test_cards_carry_the_manifest_numbers(card: tuple[dict[str, Any], str, str]) -> None:
    manifest, markdown, html = card
    test = manifest["metrics"]["test"]
    for name, values in test["per_class"].items():
        cells = [f"{values[k]:.3f}" for k in ("precision", "recall", "f1")]
        row = f"| {name} | " + " | ".join(cells) + f" | {values['support']} |"
        assert row in markdown
    for name, row in zip(manifest["target"]["classes"], test["confusion_matrix"], strict=True):
        assert f"| {name} | " + " | ".join(map(str, row)) + " |" in markdown
    baseline = manifest["metrics"]["baseline"]
    for entry in baseline.values():
        assert f"{entry['test']['accuracy']:.4f}" in markdown
    ranking = manifest["explain"]["global_importance"]["ranking"]
    values = [r["mean_abs_shap"] for r in ranking]
    assert values == sorted(values, reverse=True)  # the ranking survives the sorted-keys manifest
    importance = {r["feature"]: r["mean_abs_shap"] for r in ranking}
    assert set(importance) == {spec["name"] for spec in manifest["inputs"]}
    total = sum(importance.values())
    for name in importance:  # each input's share of the total (one unit across learners)
        assert f"| {name} | {100 * importance[name] / total:.1f}% |" in markdown
        assert f"<td>{name}</td>" in html
    assert "|--- " in markdown  # the depth-3 tree's rules


def test_card_and_search_log_agree_on_the_trials(small_artifact: Path, card: tuple[dict[str, Any], str, str]) -> None:
    manifest, markdown, _ = card
    trials = (small_artifact / "search_log.jsonl").read_text().splitlines()
    assert f"{manifest['search']['trials']} trials" in markdown
    assert len(trials) == manifest["search"]["trials"]


def test_the_card_says_how_the_candidates_were_ordered(card: tuple[dict[str, Any], str, str]) -> None:
    """The segmentation table is small enough for the rerank stage: the card names the folds, the
    rows, and shows each baseline's cross-validated score beside the exported model's."""
    manifest, markdown, _ = card
    selection = manifest["search"]["selection"]
    assert selection["method"] == "cv"
    assert selection["rows"] == manifest["metrics"]["n_train"] + manifest["metrics"]["n_val"]
    said = f"{selection['folds']}-fold cross-validation on {selection['rows']:,} rows"
    assert said in markdown
    ranked = {r["trial_index"]: r for r in selection["ranked"]}
    exported = ranked[manifest["search"]["trial_index"]]
    assert f"| exported model ({manifest['search']['learner']}) | " in markdown
    assert f"{exported['cv_quality']:.4f}" in markdown
    for entry in manifest["metrics"]["baseline"].values():
        search = entry.get("search") or {}
        if search.get("cv_quality") is not None:
            assert f"{search['cv_quality']:.4f}" in markdown
            # never worse on the measure the choice was made on, unless that baseline's own
            # artifact was refused (the verify stage tries candidates in this order)
            refused = {r["trial_index"] for r in manifest["search"]["rejected_at_export"]}
            assert exported["cv_quality"] >= search["cv_quality"] or search["trial_index"] in refused
