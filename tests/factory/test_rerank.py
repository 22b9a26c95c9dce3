"""The rerank stage: on a small table the search's best candidates are ordered by k-fold
cross-validation, not by one holdout (issue 13: on a 2.2k-row table the holdout's pick is close
to a draw). Real scikit-learn models on a generated table; the holdout scores are set by hand so
that the holdout and the cross-validation disagree on purpose."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import factory._rerank as rerank_module
from factory import BuildConfig
from factory._schema import make_preprocessor
from factory._search import Candidate, SearchResult, Trial
from factory._stages import Searched
from factory.errors import FactoryInputError
from factory.stages import load_data, make_labels, rerank, split_data


def _table(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Two informative numbers and a noise column; the label follows their sum."""
    rng = np.random.default_rng(seed)
    a, b, noise = rng.normal(size=rows), rng.normal(size=rows), rng.normal(size=rows)
    label = np.where(a + b + rng.normal(scale=0.5, size=rows) > 0, "yes", "no")
    return pd.DataFrame({"a": a, "b": b, "noise": noise, "responded": label})


def _trial(index: int, learner: str, holdout_quality: float) -> Trial:
    return Trial(
        index=index, learner=learner, config={"i": index}, quality=holdout_quality, loss=1 - holdout_quality,
        latency_p50_us=5.0, latency_p99_us=10.0, size_bytes=1000, feasible=True, elapsed_s=0.1,
    )  # fmt: skip


def _searched(config: BuildConfig, table: pd.DataFrame, models: list[tuple[str, float, object]]):  # type: ignore[no-untyped-def]
    """The dataset and a Searched whose candidates are ``models`` in the given (holdout) order."""
    data = load_data(table, config)
    dataset = split_data(make_labels(data, config), config)
    preprocessor = make_preprocessor(dataset.schema).fit(dataset.train)
    candidates = [
        Candidate(trial=_trial(i, learner, quality), model=model, graph=None)  # type: ignore[arg-type]
        for i, (learner, quality, model) in enumerate(models)
    ]
    search = SearchResult(trials=[c.trial for c in candidates], candidates=candidates)
    return dataset, Searched(preprocessor=preprocessor, context=None, search=search)  # type: ignore[arg-type]


CONFIG = BuildConfig(target="responded", metric="roc_auc", time_budget_s=10)


def test_cross_validation_overrules_a_lucky_holdout() -> None:
    # The holdout (set by hand) ranks a constant predictor first; every fold shows it has no skill.
    dataset, searched = _searched(
        CONFIG,
        _table(),
        [("lucky", 0.99, DummyClassifier(strategy="prior")), ("real", 0.60, LogisticRegression())],
    )
    out = rerank(searched, dataset, CONFIG)
    assert [c.trial.learner for c in out.search.candidates] == ["real", "lucky"]
    lucky, real = searched.search.candidates
    assert lucky.trial.cv_quality == pytest.approx(0.5)  # a constant score ranks nothing: AUC 0.5 on every fold
    assert real.trial.cv_quality is not None and real.trial.cv_quality > 0.85
    selection = out.search.selection
    assert selection is not None and selection["method"] == "cv" and selection["folds"] == 5
    n_fit = len(dataset.split.train) + len(dataset.split.validation)
    assert selection["rows"] == n_fit
    assert [r["learner"] for r in selection["ranked"]] == ["real", "lucky"]
    assert selection["ranked"][0]["validation_quality"] == 0.60  # the holdout figure is kept beside
    # The stage re-orders; it does not drop what the verify stage may fall back to.
    assert len(out.search.candidates) == len(searched.search.candidates)


def test_a_large_table_keeps_the_holdout_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rerank_module, "RERANK_MAX_ROWS", 100)
    dataset, searched = _searched(
        CONFIG, _table(), [("lucky", 0.99, DummyClassifier()), ("real", 0.60, LogisticRegression())]
    )
    out = rerank(searched, dataset, CONFIG)
    assert [c.trial.learner for c in out.search.candidates] == ["lucky", "real"]
    assert out.search.selection is not None and out.search.selection["method"] == "holdout"
    assert "the holdout is precise enough" in out.search.selection["reason"]
    assert all(c.trial.cv_quality is None for c in out.search.candidates)


def test_cv_folds_zero_turns_it_off_and_one_is_refused() -> None:
    config = CONFIG.replace(cv_folds=0)
    dataset, searched = _searched(
        config, _table(), [("lucky", 0.99, DummyClassifier()), ("real", 0.60, LogisticRegression())]
    )
    out = rerank(searched, dataset, config)
    assert [c.trial.learner for c in out.search.candidates] == ["lucky", "real"]
    assert out.search.selection == {"method": "holdout", "reason": "cv_folds=0"}
    with pytest.raises(FactoryInputError, match="'cv_folds' parameter of BuildConfig must be 0 \\(off\\) or an int"):
        CONFIG.replace(cv_folds=1)


def test_baselines_and_presets_outside_the_top_are_still_rescored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exported model must be at least the best baseline on the measure it was chosen by; a
    preset's one holdout score is as noisy as anyone's."""
    monkeypatch.setattr(rerank_module, "RERANK_CANDIDATES", 1)
    dataset, searched = _searched(
        CONFIG,
        _table(),
        [
            ("lucky", 0.99, DummyClassifier()),
            ("searched", 0.95, DecisionTreeClassifier(max_depth=2)),
            ("stump", 0.90, DecisionTreeClassifier(max_depth=1)),
            ("baseline_logistic_regression", 0.60, LogisticRegression()),
        ],
    )
    searched.search.candidates[2].trial.config = {"preset": "xgboost_shallow_150"}  # a preset is fixed too
    out = rerank(searched, dataset, CONFIG)
    rescored = ["baseline_logistic_regression", "stump", "lucky"]
    assert [r["learner"] for r in out.search.selection["ranked"]] == rescored
    # a searched configuration outside the top 1 is not re-scored: it follows, in holdout order
    assert [c.trial.learner for c in out.search.candidates] == [*rescored, "searched"]
    assert searched.search.candidates[1].trial.cv_quality is None


def test_the_time_bound_leaves_the_rest_in_holdout_order() -> None:
    ticks = iter([0.0, 0.0, 1000.0, 1000.0, 1000.0, 1000.0])  # the budget is gone after one candidate
    dataset, searched = _searched(
        CONFIG,
        _table(),
        [
            ("lucky", 0.99, DummyClassifier()),
            ("stump", 0.90, DecisionTreeClassifier(max_depth=1)),
            ("real", 0.60, LogisticRegression()),
        ],
    )
    out = rerank(searched, dataset, CONFIG, clock=lambda: next(ticks))
    assert [c.trial.learner for c in out.search.candidates] == ["lucky", "stump", "real"]
    assert out.search.selection["not_scored_for_time"] == 2


def test_a_candidate_that_cannot_be_refitted_keeps_its_place_after_the_scored() -> None:
    class Broken(LogisticRegression):
        def fit(self, X, y, sample_weight=None):  # type: ignore[no-untyped-def]
            raise RuntimeError("no refit for you")

    dataset, searched = _searched(CONFIG, _table(), [("broken", 0.99, Broken()), ("real", 0.60, LogisticRegression())])
    out = rerank(searched, dataset, CONFIG)
    assert [c.trial.learner for c in out.search.candidates] == ["real", "broken"]
    [failed] = out.search.selection["failed"]
    assert failed["trial_index"] == 0 and "no refit for you" in failed["error"]
