"""The build's stages run alone, on a small synthetic table, with fixed latency measurements.

The verify stage's budget logic is proved here deterministically: the latency measurer is a
parameter, so the tests feed it numbers and check which candidate is written, which are passed
over and why, and that the manifest records the measurement the decision was made on. (A real
measurement in a test depends on the machine's load; benchmarks/ measure speed.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from edge_runtime.artifact import Manifest
from edge_runtime.signing import verify_artifact
from factory import BudgetError, BuildConfig, DeviceProfile, FactoryInputError, ParityError
from factory._artifact import write_build
from factory._assemble import assemble_manifest
from factory._latency import LatencyReport
from factory._parity import encode_frame
from factory._schema import make_preprocessor
from factory._search import Candidate, ExportContext, SearchResult, Trial
from factory._stages import Dataset, Searched, load_data, make_labels, search_models, split_data
from factory._verify import verify
from factory.signing import PUBLIC_KEY_NAME

BUDGET_US = 50.0


def _table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, rows).astype(float)
    spend = rng.gamma(2.0, 50.0, rows)
    city = rng.choice(["north", "south", "east"], rows)
    segment = np.where(spend > 120, "high", np.where(age > 50, "senior", "other"))
    age[rng.random(rows) < 0.1] = np.nan  # missing numbers reach every stage
    return pd.DataFrame({"ID": np.arange(rows), "age": age, "spend": spend, "city": city, "segment": segment})


@pytest.fixture(scope="module")
def config() -> BuildConfig:
    # refit_full=False: these tests are about the choice among candidates as the search left them
    # (tests/factory/test_baselines_and_budgets.py covers the refit and its fall-back).
    return BuildConfig(target="segment", id_column="ID", latency_budget_us=BUDGET_US, seed=0, refit_full=False)


@pytest.fixture(scope="module")
def dataset(config: BuildConfig) -> Dataset:
    return split_data(make_labels(load_data(_table(), config), config), config)


# ----------------------------------------------------------------------------- data, labels, split


def test_data_stage_refuses_an_unknown_column_and_fingerprints_the_table(config: BuildConfig) -> None:
    table = load_data(_table(), config)
    assert table.source == "DataFrame" and len(table.raw) == 400
    assert table.fingerprint == load_data(_table(), config).fingerprint != load_data(_table(seed=1), config).fingerprint
    with pytest.raises(FactoryInputError, match=r"column 'Id' \(to drop\) is not in the data; columns are: ID, age"):
        load_data(_table(), config.replace(id_column="Id"))


def test_labels_stage_keeps_a_given_column_and_refuses_to_overwrite_one(config: BuildConfig) -> None:
    labelled = make_labels(load_data(_table(), config), config)
    assert labelled.labels.tolist() == _table()["segment"].tolist() and labelled.label_rule is None
    clusters = BuildConfig(labels="clusters", target="segment", id_column="ID")
    with pytest.raises(FactoryInputError, match="writes the segment into column 'segment', which the data already has"):
        make_labels(load_data(_table(), clusters), clusters)


def test_split_stage_is_stratified_disjoint_and_reproducible(config: BuildConfig, dataset: Dataset) -> None:
    split = dataset.split
    assert sorted(np.concatenate([split.train, split.validation, split.test]).tolist()) == list(range(400))
    assert (len(split.train), len(split.validation), len(split.test)) == (240, 80, 80)
    assert dataset.classes == ["high", "other", "senior"]
    assert dataset.schema.num == ["age", "spend"] and dataset.schema.cat == ["city"]  # ID and target are no inputs
    shares = pd.Series(dataset.labels).value_counts(normalize=True)
    for part in (split.train, split.validation, split.test):
        part_shares = pd.Series(dataset.labels[part]).value_counts(normalize=True)
        assert (part_shares - shares).abs().max() < 0.03  # stratified
    again = split_data(make_labels(load_data(_table(), config), config), config)
    assert np.array_equal(again.split.test, split.test)
    other = split_data(make_labels(load_data(_table(), config), config), config.replace(seed=1))
    assert not np.array_equal(other.split.test, split.test)


# ----------------------------------------------------------------------------- verify, with fixed numbers


class FixedLatency:
    """A latency measurer that returns the given p99 values, one per call, and records the calls."""

    def __init__(self, *p99_us: float) -> None:
        self.p99_us = list(p99_us)
        self.calls: list[tuple[Any, dict[str, np.ndarray], DeviceProfile]] = []

    def __call__(self, session: Any, feeds: dict[str, np.ndarray], profile: DeviceProfile) -> LatencyReport:
        self.calls.append((session, feeds, profile))
        p99 = self.p99_us[len(self.calls) - 1]
        return LatencyReport(p50_us=p99 / 2, p99_us=p99, runs=5000, scale=profile.scale)


def _searched(dataset: Dataset, *, swap_models: bool = False) -> Searched:
    """Two feasible candidates as the search would keep them (best loss first), without FLAML.
    ``swap_models`` pairs the first graph with the second model: a graph the gate must refuse."""
    import lightgbm
    from sklearn.ensemble import RandomForestClassifier

    preprocessor = make_preprocessor(dataset.schema).fit(dataset.train)
    context = ExportContext(
        preprocessor=preprocessor,
        schema=dataset.schema,
        classes=dataset.classes,
        latency_feeds=encode_frame(dataset.validation.iloc[:8], dataset.schema),
        profile=DeviceProfile(),
    )
    matrix, y = preprocessor.transform(dataset.train), dataset.y[dataset.split.train]
    models = [
        lightgbm.LGBMClassifier(n_estimators=10, num_leaves=4, verbose=-1, random_state=0).fit(matrix, y),
        RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(matrix, y),
    ]
    graphs = [context.graph(m) for m in models]
    if swap_models:
        models = [models[1], models[1]]
    candidates = []
    for index, (learner, model, graph) in enumerate(zip(("lgbm", "rf"), models, graphs, strict=True)):
        trial = Trial(index, learner, {}, 0.9 - index / 10, 0.1 + index / 10, 10.0, 20.0, graph.ByteSize(), True, 0.1)
        candidates.append(Candidate(trial=trial, model=model, graph=graph))
    search = SearchResult(trials=[c.trial for c in candidates], candidates=candidates, wall_time_s=1.0)
    return Searched(preprocessor=preprocessor, context=context, search=search)


def test_verify_writes_the_best_candidate_when_it_re_measures_within_budget(
    config: BuildConfig, dataset: Dataset
) -> None:
    searched = _searched(dataset)
    measure = FixedLatency(BUDGET_US)  # exactly at the budget is within it
    verified = verify(searched, dataset, config, measure=measure)
    assert verified.candidate is searched.search.candidates[0] and verified.rejected == []
    assert verified.latency.p99_us == BUDGET_US
    (session, feeds, profile), = measure.calls  # fmt: skip
    # timed as the device runs it: the float graph, on the latency rows coded from its vocabulary
    assert verified.float_graph is not None and [i.name for i in session.get_inputs()] == ["features"]
    from edge_runtime.encoding import CategoryCodes, float_features

    want = float_features(searched.context.latency_feeds, CategoryCodes(verified.float_graph.codes))
    assert isinstance(session, ort.InferenceSession) and np.array_equal(feeds["features"], want, equal_nan=True)
    assert profile is searched.context.profile
    assert verified.parity.passed and verified.parity.rows == len(dataset.test) + len(verified.stressed.frame)
    assert verified.test_proba.shape == (len(dataset.test), len(dataset.classes))
    assert verified.test_labels.tolist() == [dataset.classes[i] for i in verified.test_proba.argmax(axis=1)]


def test_verify_falls_back_when_the_best_artifact_re_measures_over_budget(
    config: BuildConfig, dataset: Dataset
) -> None:
    searched = _searched(dataset)
    verified = verify(searched, dataset, config, measure=FixedLatency(2 * BUDGET_US, 30.0))
    first, second = searched.search.candidates
    assert verified.candidate is second and verified.latency.p99_us == 30.0
    size = len(first.graph.SerializeToString())
    assert verified.rejected == [{"trial_index": 0, "reason": f"re-measured p99 100.0 µs, {size} bytes"}]


def test_verify_refuses_when_every_artifact_re_measures_over_budget(config: BuildConfig, dataset: Dataset) -> None:
    with pytest.raises(BudgetError) as caught:
        verify(_searched(dataset), dataset, config, measure=FixedLatency(51.0, 80.0))
    message = str(caught.value)
    assert message.startswith(
        "none of the 2 feasible candidates stayed within budget when its artifact was re-measured"
    )
    assert "closest: trial 0 (lgbm) re-measured p99 51.0 µs (search measured 20.0 µs)" in message
    assert "trial 0 (lgbm): re-measured p99 51.0 µs" in message and "trial 1 (rf): re-measured p99 80.0 µs" in message


def test_verify_refuses_an_artifact_over_the_size_budget_whatever_its_latency(
    config: BuildConfig, dataset: Dataset
) -> None:
    searched = _searched(dataset)
    tiny = config.replace(size_budget_kb=0.5)  # smaller than either graph
    with pytest.raises(BudgetError, match="bytes"):
        verify(searched, dataset, tiny, measure=FixedLatency(1.0, 1.0))


def test_verify_skips_a_candidate_the_parity_gate_refuses(config: BuildConfig, dataset: Dataset) -> None:
    searched = _searched(dataset, swap_models=True)  # candidate 0: lgbm's graph, rf's model
    measure = FixedLatency(10.0)
    verified = verify(searched, dataset, config, measure=measure)
    assert verified.candidate.trial.index == 1 and len(measure.calls) == 1  # the refused one is not timed
    assert verified.rejected[0]["trial_index"] == 0
    assert verified.rejected[0]["reason"].startswith("ONNX graph disagrees with the native model")
    with pytest.raises(ParityError, match="no feasible candidate passed the parity gate"):
        only_bad = _searched(dataset, swap_models=True)
        del only_bad.search.candidates[1:]
        verify(only_bad, dataset, config, measure=FixedLatency(10.0))


def test_verify_without_candidates_names_the_closest_trials(config: BuildConfig, dataset: Dataset) -> None:
    trial = Trial(0, "lgbm", {}, 0.8, 0.2, 60.0, 75.5, 2048, False, 0.1)
    searched = _searched(dataset)
    empty = Searched(searched.preprocessor, searched.context, SearchResult(trials=[trial], candidates=[]))
    with pytest.raises(BudgetError) as caught:
        verify(empty, dataset, config, measure=FixedLatency())
    assert str(caught.value) == (
        "no candidate met the budgets (p99 <= 50 µs, size <= 256 KB) in 1 trials; "
        "closest: lgbm p99 75.5 µs, 2.0 KB, quality 0.8000"
    )


# ----------------------------------------------------------------------------- manifest and write


def test_manifest_and_write_stages_record_the_measurement_the_decision_was_made_on(
    config: BuildConfig, dataset: Dataset, tmp_path: Path, isolated_key_dir: Path
) -> None:
    table = load_data(_table(), config)
    labelled = make_labels(table, config)
    searched = _searched(dataset)
    verified = verify(searched, dataset, config, measure=FixedLatency(2 * BUDGET_US, 42.0))
    manifest = assemble_manifest(config, table, labelled, dataset, searched, verified, name="toy", version="v1")
    measured = manifest["budgets"]["measured"]
    assert (measured["latency_p99_us"], measured["latency_p50_us"], measured["runs"]) == (42.0, 21.0, 5000)
    assert manifest["budgets"]["latency_p99_us"] == BUDGET_US and manifest["budgets"]["met"] is True
    assert manifest["search"]["trial_index"] == 1 and manifest["search"]["rejected_at_export"] == verified.rejected
    assert manifest["metrics"]["n_test"] == len(dataset.split.test)
    golden = manifest["golden_samples"]
    assert any(all(v is None for v in g["record"].values()) for g in golden)  # from the gate's stress rows
    assert any(g["record"]["city"] not in {"north", "south", "east", None} for g in golden)

    written = write_build(
        tmp_path / "toy" / "v1",
        manifest=manifest,
        model_bytes=verified.model_bytes,
        trials=[t.to_dict() for t in searched.search.trials],
        key_dir=isolated_key_dir,
    )
    assert isinstance(written, Manifest) and written.budgets is not None
    assert written.budgets.measured.latency_p99_us == 42.0
    on_disk = verify_artifact(tmp_path / "toy" / "v1", isolated_key_dir / PUBLIC_KEY_NAME)
    assert on_disk == written


def test_write_stage_refuses_a_manifest_the_contract_refuses_and_writes_nothing(
    config: BuildConfig, dataset: Dataset, tmp_path: Path, isolated_key_dir: Path
) -> None:
    from edge_runtime.exceptions import ManifestError

    table = load_data(_table(), config)
    searched = _searched(dataset)
    verified = verify(searched, dataset, config, measure=FixedLatency(10.0))
    manifest = assemble_manifest(
        config, table, make_labels(table, config), dataset, searched, verified, name="toy", version="v1"
    )
    manifest["surprise"] = 1
    with pytest.raises(ManifestError, match="surprise"):
        write_build(tmp_path / "toy" / "v1", manifest=manifest, model_bytes=verified.model_bytes, trials=[],
                    key_dir=isolated_key_dir)  # fmt: skip
    assert not (tmp_path / "toy").exists() or not any((tmp_path / "toy").iterdir())


# ----------------------------------------------------------------------------- search, with fixed numbers


def test_search_stage_marks_every_trial_over_a_latency_budget_infeasible(config: BuildConfig, dataset: Dataset) -> None:
    """Every candidate 'measures' 80 µs against a 50 µs budget: nothing is kept for export, every
    trial is logged with that latency, and the verify stage names the closest."""
    quick = config.replace(time_budget_s=2, learners=["lrl1"])
    searched = search_models(dataset, quick, measure=lambda s, f, p: LatencyReport(40.0, 80.0, 400, p.scale))
    trials = searched.search.trials
    assert trials and searched.search.candidates == []
    assert all(not t.feasible and t.latency_p99_us == 80.0 for t in trials if t.error is None)
    with pytest.raises(BudgetError, match=r"no candidate met the budgets \(p99 <= 50 µs.*closest: lrl1 p99 80.0 µs"):
        verify(searched, dataset, quick, measure=FixedLatency())
