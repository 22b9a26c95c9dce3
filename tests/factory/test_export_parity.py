"""Round-trip every learner the search uses through the export, and prove the gate bites."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from factory_testdata import learner_zoo, segmentation_table

from factory._onnx_export import export_graph
from factory._parity import check_parity
from factory._schema import infer_schema, make_preprocessor, normalise_frame
from factory.errors import ParityError


def _models() -> dict[str, Any]:
    return learner_zoo()


@pytest.fixture(scope="module")
def data(segmentation_csv) -> tuple:  # type: ignore[no-untyped-def]
    schema, classes, frame, y = segmentation_table(segmentation_csv)
    train, held_out = frame.iloc[:6000], frame.iloc[6000:]
    preprocessor = make_preprocessor(schema).fit(train)
    return schema, classes, preprocessor, train, y[:6000], held_out


def _gate(data: tuple, *, exported: Any, native: Any) -> Any:  # type: ignore[type-arg]
    """The parity gate on ``exported``'s graph against ``native``'s predictions (the same model
    unless a test wants the gate to bite)."""
    schema, classes, preprocessor, _, _, held_out = data
    graph = export_graph(preprocessor, exported, schema, classes).SerializeToString()
    return check_parity(graph, lambda f: native.predict_proba(preprocessor.transform(f)), held_out, schema, classes)


@pytest.mark.parametrize("learner", sorted(_models()), ids=str)
def test_every_learner_exports_with_parity(data, learner: str) -> None:  # type: ignore[no-untyped-def]
    schema, classes, preprocessor, train, y, held_out = data
    model = _models()[learner]
    model.fit(preprocessor.transform(train), y)
    report = _gate(data, exported=model, native=model)
    assert report.passed
    assert report.label_agreement == 1.0
    assert report.rows_with_missing > 0 and report.rows_with_unseen_category > 0


def test_gate_refuses_a_graph_that_disagrees(data) -> None:  # type: ignore[no-untyped-def]
    """A graph exported from one model, checked against another: the gate must refuse it."""
    schema, classes, preprocessor, train, y, held_out = data
    models = _models()
    exported, other = models["lgbm"], models["rf"]
    matrix = preprocessor.transform(train)
    exported.fit(matrix, y)
    other.fit(matrix, y)
    with pytest.raises(ParityError, match=r"ONNX graph disagrees with the native model: labels agree on"):
        _gate(data, exported=exported, native=other)


def test_missing_string_is_the_token_not_nan(data) -> None:  # type: ignore[no-untyped-def]
    """onnxruntime stringifies a NaN in a string tensor to "nan"; the encoder must never send it."""
    from edge_runtime.encoding import InputLayout, encode_records

    schema, *_ = data
    layout = InputLayout(num=schema.num, cat=schema.cat, missing_token="__missing__")
    feeds = encode_records(layout, [{name: float("nan") for name in schema.cat}, {}])
    assert set(feeds["cat"].ravel()) == {"__missing__"}
    assert np.isnan(feeds["num"]).all()


def test_device_profile_scales_the_budgeted_latency(segmentation_csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A terminal 1000x slower than this machine cannot meet a 50 µs budget with any model."""
    import json

    from factory import BudgetError, build

    profile = tmp_path / "slow-terminal.json"
    profile.write_text(json.dumps({"format_version": 1, "scale": 1000.0}))
    with pytest.raises(BudgetError, match="no candidate met the budgets"):
        build(
            segmentation_csv,
            target="Segmentation",
            id_column="ID",
            out_dir=tmp_path / "out",
            time_budget_s=2,
            device_profile=profile,
            learners=("lrl1",),
        )


def test_size_budget_steers_the_choice(segmentation_csv, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from factory import build

    result = build(
        segmentation_csv,
        target="Segmentation",
        id_column="ID",
        out_dir=tmp_path,
        time_budget_s=5,
        size_budget_kb=12,
        learners=("lgbm",),
    )
    assert (result.artifact_dir / "model.onnx").stat().st_size <= 12 * 1024
    over = [t for t in result.search.trials if t.size_bytes > 12 * 1024]
    assert over, "the search never tried a model over 12 KB, so the budget was not exercised"
    assert all(not t.feasible for t in over)
    assert result.manifest["search"]["trial_index"] not in {t.index for t in over}


def test_lightgbm_thresholds_convert_exactly_on_float32_inputs() -> None:
    """A LightGBM configuration whose double thresholds rounded to the nearest float32 sent
    rows down the other branch in ONNX (probabilities off by up to 0.96 before the fix). The
    rewrite must leave the native model's predictions unchanged and make the graph agree."""
    import lightgbm
    import onnxruntime as ort

    from factory._onnx_export import float32_exact_lightgbm_thresholds
    from factory._parity import onnx_predict, stress_rows
    from factory.features import build_value_tier_table

    table, _ = build_value_tier_table()
    labels = table.pop("value_tier")
    table = table.drop(columns=["customer_id"])
    schema = infer_schema(table)
    frame = normalise_frame(table, schema)
    classes = sorted(labels.unique())
    y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
    train, held_out = frame.iloc[:2000], frame.iloc[2000:]
    preprocessor = make_preprocessor(schema).fit(train)
    model = lightgbm.LGBMClassifier(
        n_estimators=8, num_leaves=4, learning_rate=0.3, min_child_samples=2, max_bin=1023,
        colsample_bytree=0.8, random_state=1, verbose=-1,
    ).fit(preprocessor.transform(train), y[:2000])  # fmt: skip
    stressed, _, _ = stress_rows(held_out, schema, 200, 0)
    rows = pd.concat([held_out.reset_index(drop=True), stressed], ignore_index=True)
    matrix = preprocessor.transform(rows)
    before = model.predict_proba(matrix)
    float32_exact_lightgbm_thresholds(model)
    assert np.array_equal(model.predict_proba(matrix), before)
    graph = export_graph(preprocessor, model, schema, classes)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    _, proba = onnx_predict(session, rows, schema)
    assert np.max(np.abs(proba - before)) <= 1e-4
