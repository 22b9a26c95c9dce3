"""Our own baselines: a scaled logistic regression and a depth-3 tree, candidates and yardsticks.

They are *search candidates* (``factory._search`` fits them on the same preprocessed training
rows as FLAML's trials, scores them on the same validation rows with the build's metric, exports
and times them the same way), so the exported model is never worse on validation than the best
baseline that fits the budgets — when a baseline is best, the baseline is what is exported
(docs/DESIGN.md §2, "Baselines are candidates"). The card shows each one's validation metric,
its test metric and test accuracy beside the exported model's, and says which was exported and
why; the tree's rules are kept as text for it. The scaler is inside the exported graph
(skl2onnx converts ``StandardScaler`` + ``LogisticRegression`` as one pipeline).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, export_text

__all__ = [
    "BASELINE_DESCRIPTIONS",
    "baseline_card_blocks",
    "baseline_models",
    "interpretable_baselines",
    "refit_baselines",
]

TREE_DEPTH = 3
BASELINE_DESCRIPTIONS = {
    "logistic_regression": "standardised features, multinomial logistic regression (L2, C=1)",
    "decision_tree": f"decision tree, max_depth={TREE_DEPTH}",
}


def baseline_models(seed: int) -> dict[str, Any]:
    """Unfitted baselines by name (the names of ``metrics.baseline`` in the manifest)."""
    from sklearn.linear_model import LogisticRegression

    logistic: Pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    return {
        "logistic_regression": logistic,
        "decision_tree": DecisionTreeClassifier(max_depth=TREE_DEPTH, random_state=seed),
    }


def refit_baselines(searched: Any, dataset: Any) -> dict[str, Any]:
    """The baselines refit on train + validation rows, as the exported model was (so the card's
    test figures compare models that learnt from the same rows)."""
    import numpy as np
    from sklearn.base import clone

    rows = np.concatenate([dataset.split.train, dataset.split.validation])
    matrix = searched.preprocessor.transform(dataset.frame.iloc[rows])
    return {name: clone(m).fit(matrix, dataset.y[rows]) for name, m in searched.search.baseline_models.items()}


def _quality(y: np.ndarray, proba: np.ndarray, n_classes: int, metric: str | None) -> dict[str, float]:
    from factory._search import score

    predicted = proba.argmax(axis=1)
    out = {
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, average="macro", labels=list(range(n_classes)), zero_division=0)),
    }
    if metric is not None and metric not in out:
        out[metric] = score(metric, y, proba, n_classes)[0]
    return out


def interpretable_baselines(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    features: list[str],
    classes: list[str],
    seed: int,
    *,
    metric: str | None = None,
    fitted: Mapping[str, Any] | None = None,
    searched: Mapping[str, Any] | None = None,
    refit_rows: int = 0,
) -> dict[str, Any]:
    """Each baseline's test accuracy, macro F1 and ``metric`` (and, for the ones the search
    tried — ``searched``: name -> its ``Trial`` — its validation quality, latency and size).

    ``fitted`` reuses the search's fitted baselines (name -> model); missing ones are fitted
    here on ``train``.
    """
    x_train, y_train = train
    x_test, y_test = test
    k = len(classes)
    models = dict(fitted or {})
    for name, model in baseline_models(seed).items():
        if name not in models:
            models[name] = model.fit(x_train, y_train)
    out: dict[str, Any] = {}
    for name, model in models.items():
        entry: dict[str, Any] = {
            "description": BASELINE_DESCRIPTIONS[name] + (f"; refit on {refit_rows} rows" if refit_rows else ""),
            "test": _quality(y_test, np.asarray(model.predict_proba(x_test)), k, metric),
        }
        trial = (searched or {}).get(name)
        if trial is not None:
            entry["search"] = {
                "trial_index": trial.index,
                "validation_quality": trial.quality,
                "cv_quality": trial.cv_quality,
                "feasible": trial.feasible,
                "latency_p99_us": trial.latency_p99_us if np.isfinite(trial.latency_p99_us) else None,
                "size_bytes": trial.size_bytes,
                "error": trial.error,
            }
        if name == "decision_tree":
            entry["rules"] = export_text(model, feature_names=list(features), class_names=list(classes), decimals=3)
        out[name] = entry
    return out


_DISPLAY = {"bg_nbd_gamma_gamma": "BG/NBD + Gamma-Gamma"}


def display_name(name: str) -> str:
    """A baseline's name as people read it (``logistic_regression`` -> ``logistic regression``)."""
    return _DISPLAY.get(name, name.replace("_", " "))


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}"


def _chosen_on(selection: Mapping[str, Any] | None) -> tuple[str, str]:
    """(the search-entry key the choice was made on, how to say it) for ``search.selection``."""
    if selection and selection.get("method") == "cv":
        return "cv_quality", f"{selection['folds']}-fold cross-validation on {selection['rows']:,} rows"
    return "validation_quality", "validation"


def baseline_card_blocks(
    metrics: Any, learner: str, *, selection: Mapping[str, Any] | None = None, exported_trial: int | None = None
) -> list[tuple[Any, ...]]:
    """The card's "never worse than our own baselines" section: every baseline's metric where
    the choice was made (validation, and k-fold CV when the rerank stage ordered the candidates
    — ``selection`` is the manifest's ``search.selection``), test metric and test accuracy beside
    the exported model's, which was exported and why, and — where the metric and accuracy
    disagree — both.

    ``metrics`` is the manifest's typed ``Metrics``; ``learner`` and ``exported_trial`` the
    exported trial's learner and index.
    """
    baseline: Mapping[str, Any] = metrics.baseline or {}
    if not baseline:
        return []
    metric, test = metrics.metric, metrics.test
    key, chosen_on = _chosen_on(selection)
    exported_name = learner.removeprefix("baseline_") if learner.startswith("baseline_") else None
    exported_chosen = metrics.validation_quality
    if key == "cv_quality":
        exported_chosen = next(
            (r["cv_quality"] for r in (selection or {}).get("ranked", []) if r["trial_index"] == exported_trial), None
        )
    cv_column = key == "cv_quality"
    rows: list[list[Any]] = []
    if exported_name is None:
        rows.append(
            [f"exported model ({learner})", _fmt(metrics.validation_quality)]
            + ([_fmt(exported_chosen)] if cv_column else [])
            + [_fmt(test.get(metric)), _fmt(test["accuracy"]), "exported"]
        )
    for name, entry in baseline.items():
        searched = entry.get("search") or {}
        if name == exported_name:
            status = "exported"
        elif not searched:
            status = "not a candidate (needs the transaction log)"
        elif searched.get("error"):
            status = "not exportable"
        elif not searched.get("feasible"):
            status = f"over budget (p99 {_fmt(searched.get('latency_p99_us'))} µs)"
        else:
            status = f"lost on {'cross-validation' if cv_column else 'validation'}"
        rows.append(
            [f"{display_name(name)}: {entry['description']}", _fmt(searched.get("validation_quality"))]
            + ([_fmt(searched.get("cv_quality"))] if cv_column else [])
            + [_fmt(entry["test"].get(metric)), _fmt(entry["test"]["accuracy"]), status]
        )
    tried = {
        n: e["search"] for n, e in baseline.items() if e.get("search") and e["search"].get("feasible")
        and e["search"].get(key) is not None
    }  # fmt: skip
    best = max(tried, key=lambda n: tried[n][key] * (-1 if metric == "log_loss" else 1), default=None)
    if exported_name is not None:
        why = (
            f"The **{display_name(exported_name)}** baseline is exported: no searched model within the budgets "
            f"beat its {metric} on {chosen_on} ({_fmt(exported_chosen if cv_column else metrics.validation_quality)})."
        )
    elif best is not None:
        why = (
            f"The searched **{learner}** model is exported: its {metric} on {chosen_on} "
            f"{_fmt(exported_chosen)} is at least the best baseline's ({display_name(best)}, "
            f"{_fmt(tried[best][key])})."
        )
    else:
        why = f"The searched **{learner}** model is exported; no baseline met the budgets."
    if cv_column:
        why += (
            " The search compared candidates on one validation split; on a table this small the best of"
            f" them were then re-scored by {chosen_on} (the training and validation rows), and the order"
            " of that score decided."
        )
    refit = any("refit on" in str(entry.get("description", "")) for entry in baseline.values())
    if refit:
        why += (
            " After the choice, the exported model and the baselines were refit on the training and"
            " validation rows together; the test columns are those refit models."
        )
    header = ["model", f"validation {metric}"] + ([f"{metric}, {chosen_on}"] if cv_column else [])
    blocks: list[tuple[Any, ...]] = [
        ("h", 3, "Never worse than our own baselines (same rows)"),
        ("p", why),
        ("table", header + [f"test {metric}", "test accuracy", "status"], rows),
    ]
    per_class = {c: v["f1"] for c, v in (test.get("per_class") or {}).items()}
    for name, entry in baseline.items():
        theirs = entry["test"].get("f1_per_class")
        if not theirs or not per_class:
            continue
        label = display_name(name)
        pairs = ", ".join(f"{c} {per_class[c]:.3f} / {theirs[c]:.3f}" for c in per_class if c in theirs)
        ours_better = [c for c in per_class if c in theirs and per_class[c] > theirs[c]]
        theirs_better = [c for c in per_class if c in theirs and theirs[c] > per_class[c]]
        blocks.append(
            ("p", f"Per-class F1 on the test rows, exported / {label}: {pairs}. The exported model is better on "
             f"{', '.join(ours_better) or 'none'}; the {label} on {', '.join(theirs_better) or 'none'}.")
        )  # fmt: skip
    if metric != "accuracy":
        exported_test = (test.get(metric), test["accuracy"])
        for name, entry in baseline.items():
            if name == exported_name:
                continue
            other = (entry["test"].get(metric), entry["test"]["accuracy"])
            if None in (*exported_test, *other):
                continue
            sign = -1 if metric == "log_loss" else 1
            better_metric = sign * (exported_test[0] - other[0]) > 0
            better_accuracy = exported_test[1] > other[1]
            if better_metric != better_accuracy and exported_test[1] != other[1]:
                blocks.append(
                    ("p", f"On the test rows {metric} and accuracy disagree against the {display_name(name)}: "
                     f"exported {metric} {_fmt(exported_test[0])} vs {_fmt(other[0])}, accuracy "
                     f"{_fmt(exported_test[1])} vs {_fmt(other[1])}. The search optimises {metric}.")
                )  # fmt: skip
    return blocks
