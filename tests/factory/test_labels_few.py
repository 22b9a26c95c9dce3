"""--labels few on the segmentation data with most labels hidden: counts, confidence and the
held-out comparison, checked against the hidden truth the propagation never saw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from factory.errors import FactoryInputError
from factory.labels import propagate_labels

KEEP = 0.1  # share of rows that keep their label


@pytest.fixture(scope="module")
def hidden(segmentation_csv: Path) -> tuple[pd.DataFrame, pd.Series, np.ndarray]:
    raw = pd.read_csv(segmentation_csv)
    truth = raw["Segmentation"].astype(str).copy()
    hide = np.random.default_rng(7).random(len(raw)) >= KEEP
    partly = raw.copy()
    partly.loc[hide, "Segmentation"] = np.nan
    return partly, truth, hide


@pytest.fixture(scope="module")
def spread(hidden: tuple[pd.DataFrame, pd.Series, np.ndarray]) -> Any:
    partly, _, _ = hidden
    return propagate_labels(partly, "Segmentation", exclude=["ID"], seed=0)


def test_every_hidden_row_gets_a_label_and_given_labels_are_kept(
    hidden: tuple[pd.DataFrame, pd.Series, np.ndarray], spread: Any
) -> None:
    partly, truth, hide = hidden
    report = spread.report
    assert report["n_inferred"] == int(hide.sum())
    assert report["n_given"] == int((~hide).sum())
    assert spread.inferred.to_numpy().tolist() == hide.tolist()
    assert (spread.labels[~hide] == truth[~hide]).all()
    assert spread.labels.notna().all() and set(spread.labels) <= set(truth)
    assert sum(report["inferred_counts"].values()) == report["n_inferred"]
    assert sum(report["confidence"]["histogram"]) == report["n_inferred"]
    conf = spread.confidence[hide]
    assert report["confidence"]["median"] == pytest.approx(float(conf.median()))
    assert (spread.confidence[~hide] == 1.0).all()
    # rows the kNN graph leaves unconnected are counted and get a real guess, not class 0 by default
    assert report["n_unreached"] > 0
    assert (spread.confidence > 0).all()


def test_propagated_labels_beat_chance_on_the_hidden_truth(
    hidden: tuple[pd.DataFrame, pd.Series, np.ndarray], spread: Any
) -> None:
    _, truth, hide = hidden
    accuracy = float((spread.labels[hide] == truth[hide]).mean())
    majority = float(truth[hide].value_counts(normalize=True).iloc[0])
    print(f"\npropagated-label accuracy on {int(hide.sum())} hidden rows: {accuracy:.4f} (majority {majority:.4f})")
    assert accuracy > majority + 0.05
    # confident inferences are right more often than unsure ones: the confidence means something
    conf = spread.confidence[hide]
    right = spread.labels[hide] == truth[hide]
    assert right[conf >= conf.median()].mean() > right[conf < conf.median()].mean()


def test_holdout_comparison_is_reported_with_both_numbers(spread: Any) -> None:
    hold = spread.report["holdout"]
    assert hold["rows"] + hold["labelled_train_rows"] == spread.report["n_given"]
    for key in ("accuracy_labelled_only", "accuracy_with_propagated", "propagation_accuracy"):
        assert 0.25 < hold[key] < 1.0
    assert hold["propagation_helps"] == (hold["accuracy_with_propagated"] > hold["accuracy_labelled_only"])


def test_bad_few_label_tables_are_refused(hidden: tuple[pd.DataFrame, pd.Series, np.ndarray]) -> None:
    partly, truth, _ = hidden
    with pytest.raises(FactoryInputError, match="filled in every row"):
        propagate_labels(partly.assign(Segmentation=truth), "Segmentation", exclude=["ID"])
    with pytest.raises(FactoryInputError, match="no label at all"):
        propagate_labels(partly.assign(Segmentation=np.nan), "Segmentation", exclude=["ID"])


def test_build_with_few_labels_reports_in_manifest_and_card(
    hidden: tuple[pd.DataFrame, pd.Series, np.ndarray], tmp_path: Path
) -> None:
    from factory import build

    partly, _, hide = hidden
    result = build(
        partly,
        target="Segmentation",
        labels="few",
        id_column="ID",
        name="seg-few",
        out_dir=tmp_path,
        time_budget_s=4,
        learners=("lgbm",),
        seed=0,
    )
    few = result.manifest["few_labels"]
    assert few["n_inferred"] == int(hide.sum())
    assert result.manifest["target"]["classes"] == ["A", "B", "C", "D"]
    card = (result.artifact_dir / "card.md").read_text()
    assert "Few labels, spread by label propagation" in card
    assert f"{few['holdout']['accuracy_labelled_only']:.4f}" in card
    assert f"{few['holdout']['accuracy_with_propagated']:.4f}" in card


def test_cli_few_labels_without_target_is_one_line(
    capsys: pytest.CaptureFixture[str], segmentation_csv: Path, tmp_path: Path
) -> None:
    from factory.cli import main

    out = tmp_path / "out"
    code = main(["build", "--quiet", "--out", str(out), "--data", str(segmentation_csv), "--labels", "few"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        "edgeseg-factory: error: The 'target' parameter of BuildConfig must name the label column when "
        "labels='few' (on the command line: --target). Got None instead."
    ]
    assert not out.exists()
