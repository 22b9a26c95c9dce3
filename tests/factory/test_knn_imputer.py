"""--numeric-imputer knn: the native imputer is k-nearest-neighbour imputation (it agrees with
scikit-learn's KNNImputer where distances do not tie), the graph reproduces it exactly, ties and
all-missing rows included, and the build reports its effect against the median."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from factory_testdata import segmentation_table

from factory._onnx_export import export_graph
from factory._parity import check_parity
from factory._schema import DonorKNNImputer, make_preprocessor
from factory.errors import FactoryInputError


def test_agrees_with_sklearn_knn_imputer_without_ties() -> None:
    from sklearn.impute import KNNImputer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 4))
    x[:, 1] += 0.8 * x[:, 0]
    x = x.astype(np.float32).astype(np.float64)  # the factory trains on float32-exact numbers
    holes = rng.random(x.shape) < 0.15
    holes[-1] = True  # one row with nothing known
    data = np.where(holes, np.nan, x)
    ours = DonorKNNImputer(n_neighbors=5, max_donors=10_000).fit(data)
    donors = data[~np.isnan(data).any(axis=1)]
    theirs = KNNImputer(n_neighbors=5).fit(donors)
    some_known = ~np.isnan(data).all(axis=1)
    assert np.allclose(ours.transform(data)[some_known], theirs.transform(data)[some_known], atol=1e-5)
    assert np.array_equal(ours.transform(data)[-1], ours.statistics_.astype(np.float64))
    assert np.allclose(ours.statistics_, np.nanmedian(data, axis=0), atol=1e-6)
    # present values are never touched
    assert np.array_equal(ours.transform(data)[~holes], data[~holes])


def test_needs_enough_complete_rows() -> None:
    data = np.array([[1.0, np.nan], [np.nan, 2.0], [3.0, 4.0]])
    with pytest.raises(FactoryInputError, match="at least 5 training rows with every number present"):
        DonorKNNImputer(n_neighbors=5).fit(data)


@pytest.fixture(scope="module")
def segmentation(segmentation_csv: Path) -> tuple[Any, ...]:
    schema, classes, frame, y = segmentation_table(segmentation_csv)
    return schema, classes, frame.iloc[:6000], y[:6000], frame.iloc[6000:]


def test_graph_reproduces_knn_imputation_with_ties_and_all_missing_rows(segmentation: tuple[Any, ...]) -> None:
    """Age, Work_Experience and Family_Size are whole numbers: distances tie all the time."""
    import lightgbm

    schema, classes, train, y, held_out = segmentation
    preprocessor = make_preprocessor(schema, numeric_imputer="knn").fit(train)
    matrix = preprocessor.transform(train)
    model = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=8, verbose=-1, random_state=0).fit(matrix, y)
    graph = export_graph(preprocessor, model, schema, classes)
    ops = {node.op_type for node in graph.graph.node}
    assert "TopK" in ops and "Imputer" not in ops
    assert all(i.domain != "" or i.version == 15 for i in graph.opset_import)
    onnx.checker.check_model(graph)

    def native(frame: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(pd.DataFrame(preprocessor.transform(frame), columns=model.feature_name_))

    report = check_parity(graph.SerializeToString(), native, held_out, schema, classes, seed=0)
    assert report.label_agreement == 1.0 and report.max_abs_prob_diff <= 1e-4
    assert report.rows_with_missing > 0
    # and the imputed numbers themselves, through the graph's preprocessing part only
    imputed = preprocessor.named_steps["columns"].named_transformers_["num"]
    rows = held_out[schema.num].to_numpy()
    assert np.isnan(rows).any()
    assert not np.isnan(imputed.transform(rows)).any()


def test_build_reports_knn_against_median_on_the_same_split(segmentation_csv: Path, tmp_path: Path) -> None:
    from factory import build

    result = build(
        segmentation_csv,
        target="Segmentation",
        id_column="ID",
        name="seg-knn",
        out_dir=tmp_path,
        numeric_imputer="knn",
        time_budget_s=4,
        latency_budget_us=500,
        learners=("lgbm",),
        seed=0,
    )
    preprocessing = result.manifest["preprocessing"]
    assert preprocessing["numeric_imputer"] == "knn"
    assert preprocessing["missing_in_training"]["Work_Experience"] > 0.05
    comparison = preprocessing["comparison"]
    assert set(comparison["test"]) == {"median", "knn"}
    assert comparison["metric"] == result.manifest["metrics"]["metric"]
    print(f"\nknn vs median imputation, test {comparison['metric']}: {comparison['test']}")
    assert result.manifest["parity"]["passed"] and result.manifest["parity"]["rows_with_missing"] > 0
    graph = onnx.load(str(result.artifact_dir / "model.onnx"))
    assert "TopK" in {node.op_type for node in graph.graph.node}
    card = (result.artifact_dir / "card.md").read_text()
    assert "Numeric imputer: **knn**" in card and "Effect on test" in card
