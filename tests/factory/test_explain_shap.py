"""SHAP values add up to the model's own output, for every kind of learner the search exports,
and the interpretable baselines report the quality they really have."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from factory_testdata import learner_zoo, segmentation_table

from factory._schema import make_preprocessor
from factory.explain import global_importance, interpretable_baselines, shap_values


@pytest.fixture(scope="module")
def data(segmentation_csv: Any) -> tuple[Any, ...]:
    schema, classes, frame, y = segmentation_table(segmentation_csv)
    preprocessor = make_preprocessor(schema).fit(frame.iloc[:6000])
    x = preprocessor.transform(frame)
    return schema, classes, x[:6000], y[:6000], x[6000:6150], y[6000:6150]


def _raw_margin(model: Any, x: np.ndarray) -> np.ndarray:
    module = type(model).__module__
    if module.startswith("lightgbm"):
        return np.asarray(model.predict(x, raw_score=True))
    if module.startswith("xgboost"):
        return np.asarray(model.predict(x, output_margin=True))
    raise AssertionError(module)


def _models() -> dict[str, Any]:
    return learner_zoo()


@pytest.mark.parametrize("learner", sorted(_models()), ids=str)
def test_shap_values_add_up_to_the_model_output(data: tuple[Any, ...], learner: str) -> None:
    _, _, x_train, y_train, x_test, _ = data
    model = _models()[learner].fit(x_train, y_train)
    result = shap_values(model, x_test, background=x_train[:200])
    total = result.base[None, :] + result.values.sum(axis=1)  # [rows, outputs]
    if learner in ("lgbm", "xgboost"):
        assert result.output == "raw margin (log-odds)"
        expected = _raw_margin(model, x_test)
    elif learner in ("rf", "extra_tree"):
        assert result.output == "probability"
        expected = model.predict_proba(x_test)
    else:
        assert result.output == "decision function (log-odds)"
        expected = model.decision_function(x_test)
    assert total.shape == expected.shape
    assert np.allclose(total, expected, atol=1e-4), np.abs(total - expected).max()


def test_global_importance_is_mean_absolute_shap_per_input(data: tuple[Any, ...]) -> None:
    schema, _, x_train, y_train, x_test, _ = data
    model = _models()["lgbm"].fit(x_train, y_train)
    importance = global_importance(model, x_test, schema.columns)
    values = shap_values(model, x_test).values
    expected = np.abs(values).sum(axis=2).mean(axis=0)
    ranking = importance["ranking"]
    assert [r["feature"] for r in ranking] == [schema.columns[i] for i in np.argsort(-expected, kind="stable")]
    by_name = {r["feature"]: r["mean_abs_shap"] for r in ranking}
    for i, name in enumerate(schema.columns):
        assert by_name[name] == pytest.approx(expected[i])


def test_baselines_report_their_real_test_quality(data: tuple[Any, ...]) -> None:
    from sklearn.metrics import accuracy_score
    from sklearn.tree import DecisionTreeClassifier

    schema, classes, x_train, y_train, x_test, y_test = data
    result = interpretable_baselines((x_train, y_train), (x_test, y_test), schema.columns, classes, seed=0)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x_train, y_train)
    assert result["decision_tree"]["test"]["accuracy"] == pytest.approx(accuracy_score(y_test, tree.predict(x_test)))
    rules = result["decision_tree"]["rules"]
    assert "|--- " in rules and any(f"--- {c} <=" in rules for c in schema.columns)
    assert 0.25 < result["logistic_regression"]["test"]["accuracy"] <= 1.0
