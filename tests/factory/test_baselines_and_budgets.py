"""Never worse than our own baselines, and budgets that hold (issue 13), with injected latency.

The baselines (scaled logistic regression, depth-3 tree) are search candidates: when nothing the
search found fits the budgets or beats them, a baseline is what is exported and the card says so.
The search and the artifact's re-measure time the same graph on the same rows (with missing and
unseen values); the log shows both numbers; when the re-measure refuses the best candidates the
build falls back through the feasible ones in order and fails only when none holds, naming the
closest. Every latency here is a fixed number: no test asserts a measured time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from factory._latency import DeviceProfile, LatencyReport
from factory._search import _BudgetedMetric
from factory.errors import BudgetError


def _linear_table(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """A table a logistic regression fits well: the class is a noisy linear score."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    score = x @ np.array([1.5, -1.0, 0.8, 0.5, -0.3, 0.2]) + rng.normal(scale=0.7, size=n)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    frame["plan"] = rng.choice(["basic", "pro", "gold"], n)
    frame["churn"] = np.where(score > 0, "yes", "no")
    return frame


class PhasedLatency:
    """p99 ``search_us`` for FLAML's trials, ``baseline_us`` once the baselines are tried (and for
    the artifact re-measure after them); records every feed it was given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, search_us: float, baseline_us: float) -> None:
        self.baselines = False
        self.search_us, self.baseline_us = search_us, baseline_us
        self.feeds: list[dict[str, np.ndarray]] = []
        original = _BudgetedMetric.add_baselines

        def flagged(metric: _BudgetedMetric, *args: Any) -> None:
            self.baselines = True
            original(metric, *args)

        monkeypatch.setattr(_BudgetedMetric, "add_baselines", flagged)

    def __call__(self, session: Any, feeds: dict[str, np.ndarray], profile: DeviceProfile) -> LatencyReport:
        self.feeds.append(feeds)
        p99 = self.baseline_us if self.baselines else self.search_us
        return LatencyReport(p99 / 2, p99, 400, profile.scale)


def test_a_baseline_is_exported_when_no_searched_model_fits_the_budget_and_the_card_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_runtime import Classifier
    from factory import build

    measure = PhasedLatency(monkeypatch, search_us=80.0, baseline_us=10.0)
    result = build(
        _linear_table(), target="churn", metric="roc_auc", out_dir=tmp_path, time_budget_s=8, learners=["lgbm"],
        name="linear", measure=measure,
    )  # fmt: skip
    manifest = result.manifest
    baselines = manifest["metrics"]["baseline"]
    best = max(baselines, key=lambda name: baselines[name]["search"]["validation_quality"])
    assert manifest["search"]["learner"] == f"baseline_{best}"
    assert manifest["metrics"]["validation_quality"] == baselines[best]["search"]["validation_quality"]
    assert all(not t.feasible for t in result.search.trials if not t.learner.startswith("baseline_"))
    card = (result.artifact_dir / "card.md").read_text()
    assert f"The **{best.replace('_', ' ')}** baseline is exported" in card
    assert "| exported |" in card
    # Chosen on validation, then refit on train + validation rows (and so are the card's baselines).
    n_fit = manifest["metrics"]["n_train"] + manifest["metrics"]["n_val"]
    assert result.native_pipeline[-1] is not result.search.baseline_models[best]
    assert all(f"refit on {n_fit} rows" in entry["description"] for entry in baselines.values())
    assert "refit on the training and validation rows together" in card
    # The baseline graph (scaler inside for the logistic regression) passed the same parity gate
    # and runs on the device like any model.
    assert manifest["parity"]["passed"]
    clf = Classifier.load(result.artifact_dir)
    record = {f"x{i}": 0.5 for i in range(6)} | {"plan": "pro"}
    assert clf.classify(record).segment in ("no", "yes")


def test_the_exported_model_is_never_worse_on_validation_than_a_feasible_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from factory import build

    measure = PhasedLatency(monkeypatch, search_us=10.0, baseline_us=10.0)  # everything fits
    result = build(
        _linear_table(seed=1), target="churn", metric="accuracy", out_dir=tmp_path, time_budget_s=8,
        learners=["extra_tree"], name="linear", measure=measure,
    )  # fmt: skip
    metrics = result.manifest["metrics"]
    for entry in metrics["baseline"].values():
        assert metrics["validation_quality"] >= entry["search"]["validation_quality"]
    card = (result.artifact_dir / "card.md").read_text()
    assert "validation accuracy" in card and "test accuracy" in card
    # The search and the artifact were timed on the same rows, with missing and unseen values,
    # fed as the device feeds the graph it runs (the float graph: numbers, then string codes).
    search_feeds, artifact_feeds = measure.feeds[0], measure.feeds[-1]
    np.testing.assert_array_equal(search_feeds["features"], artifact_feeds["features"])
    n_num = len(result.schema.num)
    float_graph = result.typed_manifest.float_graph
    assert float_graph is not None
    vocabularies = float_graph.codes
    numbers, codes = search_feeds["features"][:, :n_num], search_feeds["features"][:, n_num:]
    assert np.isnan(numbers).all(axis=1).any()  # a row with every number missing
    missing = [v.index("__missing__") if "__missing__" in v else -1 for v in vocabularies]
    assert (codes == missing).all(axis=1).any()  # a row with every string missing
    assert (codes == -1).all(axis=1).any()  # unseen categories take the LabelEncoder's -1


def test_the_search_log_shows_the_search_and_artifact_latency_and_the_build_falls_back_in_order(
    tmp_path: Path,
) -> None:
    import json

    from factory import build
    from factory._settings import DEFAULT_LATENCY_BUDGET_US

    class Remeasure:
        """The search measures 20 µs everywhere; the artifacts of the two best candidates
        re-measure over budget, the third within it."""

        def __init__(self) -> None:
            self.search_done = False
            self.artifact_calls = 0

        def __call__(self, session: Any, feeds: dict[str, np.ndarray], profile: DeviceProfile) -> LatencyReport:
            if not self.search_done:
                return LatencyReport(10.0, 20.0, 400, profile.scale)
            self.artifact_calls += 1
            p99 = 90.0 if self.artifact_calls <= 2 else 30.0
            return LatencyReport(p99 / 2, p99, 5000, profile.scale)

    remeasure = Remeasure()
    from factory import _verify

    original = _verify.verify

    def verify(*args: Any, **kwargs: Any) -> Any:
        remeasure.search_done = True
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("factory._build.verify", verify)
        result = build(
            _linear_table(seed=2), target="churn", out_dir=tmp_path, time_budget_s=8, learners=["lgbm"],
            name="fallback", measure=remeasure, refit_full=False,
        )  # fmt: skip
    candidates = result.search.candidates
    assert len(candidates) >= 3
    rejected = result.manifest["search"]["rejected_at_export"]
    assert [r["trial_index"] for r in rejected] == [c.trial.index for c in candidates[:2]]
    assert result.manifest["search"]["trial_index"] == candidates[2].trial.index
    assert result.manifest["budgets"]["measured"]["latency_p99_us"] == 30.0 <= DEFAULT_LATENCY_BUDGET_US
    logged = [json.loads(line) for line in (result.artifact_dir / "search_log.jsonl").read_text().splitlines()]
    by_index = {t["index"]: t for t in logged}
    for candidate, expected in zip(candidates[:3], (90.0, 90.0, 30.0), strict=True):
        entry = by_index[candidate.trial.index]
        assert entry["latency_p99_us"] == 20.0 and entry["remeasured_p99_us"] == expected
    remeasured = {t["index"] for t in logged if t["remeasured_p99_us"] is not None}
    assert remeasured == {c.trial.index for c in candidates[:3]}  # in order, stopping at the first that held


def test_when_no_artifact_holds_the_error_names_the_closest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from factory import build

    calls = {"n": 0}

    def measure(session: Any, feeds: dict[str, np.ndarray], profile: DeviceProfile) -> LatencyReport:
        calls["n"] += 1
        return LatencyReport(10.0, 20.0, 400, profile.scale)

    from factory import _verify

    def over_budget(session: Any, feeds: dict[str, np.ndarray], profile: DeviceProfile) -> LatencyReport:
        calls["n"] += 1
        return LatencyReport(40.0, 60.0 + calls["n"] % 7, 5000, profile.scale)

    original = _verify.verify
    monkeypatch.setattr("factory._build.verify", lambda *a, **k: original(*a, **{**k, "measure": over_budget}))
    with pytest.raises(BudgetError, match=r"none of the \d+ feasible candidates .* closest: trial \d+ \(\w+\) "
                       r"re-measured p99 6\d\.\d µs \(search measured 20\.0 µs\)"):  # fmt: skip
        build(
            _linear_table(seed=3), target="churn", out_dir=tmp_path, time_budget_s=8, learners=["lgbm"],
            name="none", measure=measure,
        )  # fmt: skip
    assert not (tmp_path / "none").exists()  # nothing written


def test_a_refit_over_budget_falls_back_to_the_candidate_as_searched(tmp_path: Path) -> None:
    """The refit has the searched hyperparameters but new trees: when its artifact re-measures over
    budget, the same candidate as searched (the graph the search timed) is tried before the next."""
    from factory import _verify
    from factory._config import BuildConfig
    from factory._stages import load_data, make_labels, search_models, split_data

    config = BuildConfig(target="churn", time_budget_s=8, learners=["lgbm"], out_dir=tmp_path)
    dataset = split_data(make_labels(load_data(_linear_table(seed=4), config), config), config)
    searched = search_models(dataset, config, measure=lambda s, f, p: LatencyReport(5.0, 10.0, 400, p.scale))
    calls = iter([90.0, 30.0])
    verified = _verify.verify(
        searched, dataset, config, measure=lambda s, f, p: LatencyReport(5.0, next(calls), 5000, p.scale)
    )
    best = searched.search.candidates[0]
    assert verified.candidate is best and verified.native_model is best.model and verified.refit_rows == 0
    n_fit = len(dataset.split.train) + len(dataset.split.validation)
    ((rejected),) = verified.rejected
    assert rejected["trial_index"] == best.trial.index
    assert rejected["reason"].startswith("re-measured p99 90.0 µs") and rejected["reason"].endswith(
        f"(refit on {n_fit} rows)"
    )
    refit_ok = _verify.verify(
        searched, dataset, config, measure=lambda s, f, p: LatencyReport(5.0, 10.0, 5000, p.scale)
    )
    assert refit_ok.candidate is best and refit_ok.refit_rows == n_fit and refit_ok.native_model is not best.model
