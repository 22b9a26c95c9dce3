"""Segment discovery on the bundled Online Retail data: the names, the chosen k and the dormant
count are checked against numbers the test recomputes itself, not against the code's own report."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from factory.segments import DORMANT, build_segment_table, discover_segments
from tests.conftest import shared_file

NOT_FEATURES = ["customer_id"]


@pytest.fixture(scope="module")
def retail() -> tuple[pd.DataFrame, dict[str, Any]]:
    return build_segment_table(dormant_days=30)


@pytest.fixture(scope="module")
def found(retail: tuple[pd.DataFrame, dict[str, Any]]) -> Any:
    table, _ = retail
    return discover_segments(table, exclude=NOT_FEATURES, dormant_days=30, seed=0)


def _own_scaling(frame: pd.DataFrame) -> np.ndarray:
    """The scaling the docs state, written again here: median fill, signed log, z-score."""
    numeric = frame.select_dtypes("number")
    filled = numeric.fillna(numeric.median())
    logged = np.sign(filled) * np.log1p(filled.abs())
    return ((logged - logged.mean()) / logged.std(ddof=0)).to_numpy()


def test_dormant_count_matches_a_direct_count_on_the_log(
    retail: tuple[pd.DataFrame, dict[str, Any]], found: Any
) -> None:
    from factory.features import default_log_path, load_transactions

    table, info = retail
    log, _ = load_transactions(default_log_path())
    cutoff = pd.Timestamp(info["cutoff"])
    buyers = log.loc[~log["is_return"], "customer_id"].unique()
    last_seen = log[log["customer_id"].isin(buyers)].groupby("customer_id")["timestamp"].max()
    direct = int((last_seen < cutoff - pd.Timedelta(days=30)).sum())
    assert found.report["dormant"]["count"] == direct
    assert int((found.labels == DORMANT).sum()) == direct
    assert found.report["counts"][DORMANT] == direct
    assert set(table.loc[found.labels.to_numpy() == DORMANT, "is_dormant"]) == {"yes"}
    assert sum(found.report["counts"].values()) == len(table), "every customer has a segment; none dropped"


def test_dormant_days_is_configurable(retail: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    table60, info60 = build_segment_table(dormant_days=60)
    found60 = discover_segments(table60, exclude=NOT_FEATURES, dormant_days=60, n_segments=3, k_range=(3, 3))
    assert found60.report["dormant"]["count"] == int((table60["is_dormant"] == "yes").sum())
    assert found60.report["dormant"]["count"] < int((retail[0]["is_dormant"] == "yes").sum())


def test_k_is_the_argmax_of_silhouette_recomputed_independently(
    retail: tuple[pd.DataFrame, dict[str, Any]], found: Any
) -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    table, _ = retail
    active = table[table["is_dormant"] == "no"].drop(columns=NOT_FEATURES)
    matrix = _own_scaling(active)
    scores = {}
    for k in range(3, 9):
        labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(matrix)
        scores[k] = silhouette_score(matrix, labels)
    best = max(scores, key=lambda k: scores[k])
    report = found.report
    assert report["criterion"] == "silhouette (max)"
    assert report["chosen_k"] == best == report["criterion_k"]
    assert not report["overridden"]
    for k, value in scores.items():
        assert report["scores"][str(k)] == pytest.approx(value, abs=1e-4)
    assert len(set(found.labels)) == best + 1  # k clusters + the dormant rule segment


def test_alternative_gmm_choice_follows_bic(found: Any) -> None:
    alternative = found.report["alternative"]
    bic = {int(k): v for k, v in alternative["scores"].items()}
    assert alternative["method"] == "gmm"
    assert alternative["chosen_k"] == min(bic, key=lambda k: bic[k])
    assert -1.0 <= alternative["adjusted_rand_index_vs_chosen"] <= 1.0


def test_n_segments_overrides_the_criterion(retail: tuple[pd.DataFrame, dict[str, Any]], found: Any) -> None:
    table, _ = retail
    forced = discover_segments(table, exclude=NOT_FEATURES, n_segments=3, k_range=(4, 5), seed=0)
    assert forced.report["chosen_k"] == 3 and forced.report["overridden"]
    # the criterion still ran over the range and is reported beside the override
    scores = {int(k): v for k, v in forced.report["scores"].items()}
    assert sorted(scores) == [4, 5]
    assert forced.report["criterion_k"] == max(scores, key=lambda k: scores[k])
    assert len(set(forced.labels) - {DORMANT}) == 3


def test_names_agree_with_the_numbers_in_their_profiles(
    retail: tuple[pd.DataFrame, dict[str, Any]], found: Any
) -> None:
    table, _ = retail
    labels = found.labels.to_numpy()
    active = table["is_dormant"].to_numpy() == "no"
    medians = table.assign(segment=labels)[active].groupby("segment").median(numeric_only=True)
    population = table[active]

    def pct(name: str, column: str) -> float:
        value = medians.loc[name, column]
        col = population[column].dropna()
        return float((col < value).mean() + (col == value).mean() / 2)

    names = list(medians.index)
    assert len(names) == len(set(names)) == found.report["chosen_k"]
    assert DORMANT not in names
    for name in names:
        # the profile in the report holds the same numbers pandas gives
        profile = found.report["profiles"][name]
        assert profile["count"] == int((labels == name).sum())
        assert profile["medians"]["monetary"] == pytest.approx(medians.loc[name, "monetary"])
        if name.startswith("high-value"):
            assert medians.loc[name, "monetary"] == medians["monetary"].max()
            assert pct(name, "monetary") >= 0.75
            if "loyal" in name:
                assert pct(name, "frequency") >= 0.6
        elif name.startswith("new"):
            assert medians.loc[name, "tenure_days"] == medians["tenure_days"].min()
            assert pct(name, "tenure_days") <= 0.25
        elif name.startswith("at risk"):
            assert pct(name, "recency_days") >= 0.75
        elif name.startswith("frequent returners"):
            assert medians.loc[name, "return_rate"] >= 0.10
        elif name.startswith("price-sensitive occasional"):
            assert pct(name, "frequency") <= 0.4 and pct(name, "avg_basket_value") <= 0.4
        elif name.startswith("occasional"):
            assert pct(name, "frequency") <= 0.4
        elif name.startswith("loyal"):
            assert pct(name, "frequency") >= 0.6
    # on this data the value segment exists and is named so
    assert any(n.startswith("high-value") for n in names)


def test_distinguishing_features_are_standardised_median_differences(
    retail: tuple[pd.DataFrame, dict[str, Any]], found: Any
) -> None:
    table, _ = retail
    active = table[table["is_dormant"] == "no"]
    labels = found.labels[active.index]
    for name, profile in found.report["profiles"].items():
        if name == DORMANT:
            continue
        top = profile["distinguishing"][0]
        column = active[top["feature"]]
        iqr = (column.quantile(0.75) - column.quantile(0.25)) / 1.349
        scale = iqr if iqr > 0 else column.std(ddof=0)
        expected = (column[labels == name].median() - column[labels != name].median()) / scale
        assert top["effect"] == pytest.approx(expected, abs=1e-3)


def test_a_table_without_rfm_columns_gets_descriptive_names_and_no_dormant_rule() -> None:
    raw = pd.read_csv(shared_file("segmentation/Train.csv")).drop(columns=["Segmentation"])
    found = discover_segments(raw, exclude=["ID"], n_segments=3, k_range=(3, 3), seed=0)
    assert found.report["dormant"]["applied"] is False and found.report["dormant"]["count"] == 0
    assert found.report["features"] == ["Age", "Work_Experience", "Family_Size"]
    for name, profile in found.report["profiles"].items():
        first = profile["distinguishing"][0]
        word = "high" if first["effect"] > 0 else "low"
        assert name.startswith(f"{word} {first['feature']}")


def test_build_default_clusters_end_to_end(tmp_path: Path, retail: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    """The CLI job: segments are the classes, their report travels in the signed manifest."""
    from factory.cli import main

    out = tmp_path / "out"
    code = main(
        ["build-default", "--labels", "clusters", "--quiet", "--out", str(out), "--time-budget-s", "6",
         "--learners", "lgbm", "xgboost"]
    )  # fmt: skip
    assert code == 0
    (artifact,) = list(out.glob("retail-segments/*"))
    manifest = json.loads((artifact / "manifest.json").read_text())
    segments = manifest["segments"]
    assert manifest["target"]["name"] == "segment"
    assert manifest["target"]["classes"] == sorted(segments["counts"])
    assert set(manifest["target"]["profiles"]) == set(segments["counts"])
    assert manifest["target"]["label_rule"]["kind"] == "clusters"
    table = retail[0]
    assert segments["dormant"]["count"] == int((table["is_dormant"] == "yes").sum())
    assert segments["counts"][DORMANT] == segments["dormant"]["count"]
    # the classifier learns the dormant rule (is_dormant is an input): near perfect on it
    assert manifest["metrics"]["test"]["per_class"][DORMANT]["recall"] >= 0.99
    html = (artifact / "card.html").read_text()
    assert "Segments discovered by clustering" in html and "silhouette (max)" in html
    for name in segments["counts"]:
        assert name in html
    png = html.split('id="plot-pareto"><img', 1)[1].split("base64,", 1)[1].split('"', 1)[0]
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_clusters_refuses_to_overwrite_a_column(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from factory.cli import main

    path = tmp_path / "t.csv"
    pd.DataFrame({"spend": range(40), "segment": ["a", "b"] * 20}).to_csv(path, index=False)
    out = tmp_path / "out"
    code = main(["build", "--quiet", "--out", str(out), "--data", str(path), "--labels", "clusters"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "writes the segment into column 'segment', which the data already has" in err[0]
    assert not out.exists()


def test_public_api() -> None:
    import factory.explain
    import factory.labels
    import factory.segments

    # Written as word lists, not copies of the __all__ literals: the names users import.
    segments = "CLUSTER_METHODS DEFAULT_K_RANGE DORMANT NAMING_RULES SILHOUETTE_SAMPLE SegmentResult"
    segments += " build_segment_table discover_segments scale_features"
    assert factory.segments.__all__ == segments.split()
    assert factory.labels.__all__ == ["FEW_LABEL_METHODS", "FewLabelResult", "propagate_labels"]
    explain = "ShapResult baseline_models confusion_matrix_png global_importance importance_png interpretable_baselines"
    explain += " pareto_png reference_record shap_values"
    assert factory.explain.__all__ == explain.split()
    for package in (factory.segments, factory.labels, factory.explain):
        assert all(hasattr(package, name) for name in package.__all__)


def test_a_segment_too_small_to_split_is_refused_with_advice() -> None:
    from factory.errors import FactoryInputError

    values = [1.0] * 30 + [50.0] * 30 + [1000.0] * 3  # three obvious groups, one of 3 customers
    frame = pd.DataFrame({"spend": values, "visits": [v / 10 for v in values]})
    with pytest.raises(FactoryInputError, match="left one with 3 customers.*--n-segments"):
        discover_segments(frame, n_segments=3, k_range=(3, 3))


def test_gmm_as_the_method_chooses_k_by_bic_and_reports_kmeans_beside_it(
    retail: tuple[pd.DataFrame, dict[str, Any]],
) -> None:
    table, _ = retail
    found = discover_segments(table, exclude=NOT_FEATURES, method="gmm", k_range=(3, 5), seed=0)
    bic = {int(k): v for k, v in found.report["scores"].items()}
    assert found.report["criterion"] == "BIC (min)"
    assert found.report["chosen_k"] == min(bic, key=lambda k: bic[k])
    assert found.report["alternative"]["method"] == "kmeans"
    assert len(set(found.labels) - {DORMANT}) == found.report["chosen_k"]


def test_repeated_names_are_made_unique_by_a_true_qualifier(retail: tuple[pd.DataFrame, dict[str, Any]]) -> None:
    import re

    table, _ = retail
    found = discover_segments(table, exclude=NOT_FEATURES, n_segments=8, k_range=(8, 8), seed=0)
    names = [n for n in found.report["counts"] if n != DORMANT]
    assert len(names) == 8 == len(set(names))
    active = table[table["is_dormant"] == "no"]
    labels = found.labels[active.index]
    qualified = [n for n in names if "(" in n]
    assert qualified, "with 8 segments some base names repeat on this data"
    for name in qualified:
        word, feature = re.search(r"\((high|low) (\w+)\)", name).groups()  # type: ignore[union-attr]
        inside, rest = active[feature][labels == name].median(), active[feature][labels != name].median()
        assert (inside > rest) if word == "high" else (inside < rest), name
