"""The float-only graph: derived from the raw-column graph, it must give the same answers.

Rows checked are the parity gate's: held-out rows plus rows with a missing value in every
column and rows whose strings were never seen in training, fed as the device feeds them
(codes from the signed vocabulary, -1 for unseen).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from factory_testdata import learner_zoo, segmentation_table

from edge_runtime.session import make_session
from factory._float_graph import FloatGraphExport, derive_float_graph, float_predict, gate_float_graph
from factory._onnx_export import export_graph
from factory._parity import onnx_predict, stress_rows
from factory._schema import make_preprocessor

LEARNERS = ("lgbm", "xgboost", "rf", "lrl1")


@pytest.fixture(scope="module")
def table(segmentation_csv) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    schema, classes, frame, y = segmentation_table(segmentation_csv)
    return schema, classes, frame.iloc[:6000], y[:6000], frame.iloc[6000:6800]


def _fitted(table: tuple, learner: str, numeric_imputer: str = "median") -> tuple[Any, Any]:  # type: ignore[type-arg]
    schema, _, train, y, _ = table
    preprocessor = make_preprocessor(schema, numeric_imputer=numeric_imputer, seed=0).fit(train)
    model = learner_zoo()[learner]
    model.fit(preprocessor.transform(train), y)
    return preprocessor, model


def _gated(table: tuple, preprocessor: Any, exported: Any, native: Any) -> tuple[Any, FloatGraphExport | str]:  # type: ignore[type-arg]
    schema, classes, _, _, held_out = table
    raw = export_graph(preprocessor, exported, schema, classes)
    stressed = stress_rows(held_out, schema, 200, 0)
    proba = lambda f: native.predict_proba(preprocessor.transform(f))  # noqa: E731
    return raw, gate_float_graph(raw, proba, held_out, schema, classes, stressed)


@pytest.mark.parametrize("learner", LEARNERS, ids=str)
def test_float_graph_passes_the_gate_and_equals_the_raw_graph(table, learner: str) -> None:  # type: ignore[no-untyped-def]
    schema, classes, _, _, held_out = table
    preprocessor, model = _fitted(table, learner)
    raw, floated = _gated(table, preprocessor, model, model)
    assert isinstance(floated, FloatGraphExport), floated
    assert floated.parity is not None and floated.parity.passed
    assert floated.parity.label_agreement == 1.0
    assert floated.parity.rows_with_missing > 0 and floated.parity.rows_with_unseen_category > 0
    # the vocabularies are the fitted encoder's categories, in code order
    encoder = preprocessor.named_steps["columns"].named_transformers_["cat"].named_steps["encode"]
    assert floated.codes == tuple(tuple(map(str, c)) for c in encoder.categories_)
    # and the float graph answers exactly like the raw graph on missing and unseen rows
    stressed = stress_rows(held_out, schema, 200, 1).frame
    raw_labels, raw_proba = onnx_predict(make_session(raw.SerializeToString()), stressed, schema)
    labels, proba = float_predict(make_session(floated.model_bytes), stressed, schema, floated.codes, classes)
    assert list(labels) == list(raw_labels)
    np.testing.assert_allclose(proba, raw_proba, atol=1e-6)


def test_knn_imputed_numbers_keep_their_imputer(table) -> None:  # type: ignore[no-untyped-def]
    """The KNN imputer is not fused: the float graph slices the numbers back out for it."""
    preprocessor, model = _fitted(table, "lgbm", numeric_imputer="knn")
    _, floated = _gated(table, preprocessor, model, model)
    assert isinstance(floated, FloatGraphExport), floated
    assert floated.parity is not None and floated.parity.label_agreement == 1.0


def test_gate_refuses_a_float_graph_that_disagrees(table) -> None:  # type: ignore[no-untyped-def]
    """A float graph of one model against another's predictions: no float graph is shipped."""
    preprocessor, lgbm = _fitted(table, "lgbm")
    _, rf = _fitted(table, "rf")
    _, floated = _gated(table, preprocessor, lgbm, rf)
    assert isinstance(floated, str)
    assert floated.startswith("float graph refused by the parity gate: ONNX graph disagrees with the native model")


def test_unseen_and_missing_strings_take_the_label_encoders_codes(table) -> None:  # type: ignore[no-untyped-def]
    """Missing = the missing token's code (or -1 when training never saw one); unseen = -1."""
    schema, classes, _, _, _ = table
    preprocessor, model = _fitted(table, "rf")
    derived = derive_float_graph(export_graph(preprocessor, model, schema, classes), len(schema.num), len(schema.cat))
    from edge_runtime.encoding import CategoryCodes

    codes = CategoryCodes(derived.codes)
    cat = np.array([["__missing__"] * len(schema.cat), ["never seen"] * len(schema.cat)], dtype=object)
    encoded = codes.encode(cat)
    for j, vocabulary in enumerate(derived.codes):
        missing_code = vocabulary.index("__missing__") if "__missing__" in vocabulary else -1
        assert encoded[0, j] == missing_code
        assert encoded[1, j] == -1
    assert np.array_equal(codes.encode(cat.astype(str)), encoded)  # numpy str path == dict path


def test_numbers_only_graph_has_one_input(table) -> None:  # type: ignore[no-untyped-def]
    from factory._schema import InputSchema

    schema, classes, train, y, held_out = table
    numbers = InputSchema(num=list(schema.num), cat=[])
    preprocessor = make_preprocessor(numbers, seed=0).fit(train[numbers.num])
    model = learner_zoo()["rf"].fit(preprocessor.transform(train[numbers.num]), y)
    raw = export_graph(preprocessor, model, numbers, classes)
    derived = derive_float_graph(raw, len(numbers.num), 0)
    frame = pd.DataFrame(held_out[numbers.num]).reset_index(drop=True)
    labels, proba = float_predict(make_session(derived.model_bytes), frame, numbers, (), classes)
    raw_labels, raw_proba = onnx_predict(make_session(raw.SerializeToString()), frame, numbers)
    assert list(labels) == list(raw_labels)
    np.testing.assert_allclose(proba, raw_proba, atol=1e-6)
