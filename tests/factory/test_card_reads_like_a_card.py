"""The model card reads like a card (issue 14, item 7), on a real default-job model: intended use
and limitations, a feature dictionary with meaning, unit and missing share, classes in their
natural order, settings and versions as tables (no raw dicts, no ``np.str_``), profiles of every
input, importance in one unit across learners, no tree split whose two leaves are the same class."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edge_runtime.artifact import CARD_FILE, CARD_HTML_FILE, Manifest, read_manifest
from factory._card import prune_same_class_splits, render_card


@pytest.fixture(scope="module")
def card(till_artifact: Path) -> str:
    return (till_artifact / CARD_FILE).read_text(encoding="utf-8")


def test_intended_use_and_the_feature_dictionary(card: str, till_artifact: Path) -> None:
    assert "## Intended use and limitations" in card
    dictionary = card[card.index("## Feature dictionary") :].split("\n## ")[0]
    assert "| input | meaning | unit | type | training range | missing in training |" in dictionary
    rows = {line.split(" | ")[0].strip("| "): line for line in dictionary.splitlines() if line.startswith("| ")}
    for spec in read_manifest(till_artifact).inputs:
        assert spec.name in rows, spec.name
    assert "GBP" in rows["monetary"] and "2011-09-10" in rows["recency_days"]
    assert re.search(r"\| (?!0\.0%)\d+\.\d% \|$", rows["inter_purchase_days"])  # missing for one-day buyers
    html = (till_artifact / CARD_HTML_FILE).read_text(encoding="utf-8")
    assert "Intended use and limitations" in html and "Feature dictionary" in html


def test_classes_in_natural_order_and_no_raw_python_on_the_page(card: str, till_artifact: Path) -> None:
    quality = card[card.index("| segment | precision") :]
    order = [line.split(" | ")[0].strip("| ") for line in quality.splitlines()[2:7]]
    assert order == ["lapsed", "low", "mid", "high", "top"]
    assert "| truth \\ predicted | lapsed | low | mid | high | top |" in card
    for text in (card, (till_artifact / CARD_HTML_FILE).read_text(encoding="utf-8")):
        assert "np.str_" not in text and "np.float" not in text
        assert "{'" not in text and '{"' not in text  # label rule, settings, versions are tables
    assert "| chosen setting | value |" in card and "| library | version |" in card


def test_profiles_of_every_input_and_one_importance_unit(card: str, till_artifact: Path) -> None:
    profiles = card[card.index("## Segment profiles") :]
    for spec in read_manifest(till_artifact).inputs:
        assert f"| {spec.name} |" in profiles, spec.name
    # importance as a share of the total, whatever the learner's raw output (a ranking set here:
    # the check must not depend on which learner this short search picked)
    data = json.loads((till_artifact / "manifest.json").read_text(encoding="utf-8"))
    ranking = [{"feature": "monetary", "mean_abs_shap": 3.0}, {"feature": "frequency", "mean_abs_shap": 1.0}]
    data["explain"]["global_importance"] = {"method": "SHAP", "output": "raw margin (log-odds)", "ranking": ranking}
    rendered = render_card(Manifest.from_json(data))
    assert "| input | share of importance |" in rendered
    assert "| monetary | 75.0% |" in rendered and "| frequency | 25.0% |" in rendered
    assert "raw margin (log-odds)" in rendered  # and it says which raw output the learner had


def test_no_tree_rule_splits_into_two_leaves_of_the_same_class(card: str) -> None:
    rules = re.search(r"readable as rules.*?```\n(.*?)```", card, re.DOTALL)
    assert rules is not None
    assert prune_same_class_splits(rules.group(1)) == rules.group(1)  # nothing left to merge
    raw = (
        "|--- a <= 1\n|   |--- b <= 2\n|   |   |--- class: lapsed\n|   |--- b >  2\n|   |   |--- class: lapsed\n"
        "|--- a >  1\n|   |--- class: lapsed\n"
    )
    assert prune_same_class_splits(raw) == "|--- class: lapsed\n"
