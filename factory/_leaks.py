"""Inputs that give the answer away: one column that alone predicts the target.

A table as it comes often carries the outcome under another name — a hotel booking's
``reservation_status`` ("Canceled") beside ``is_canceled``, a churn table's closing date. The
model then scores near 100 % on the held-out rows and is worthless at the till, where that column
is not known yet. We cannot know what a till knows, so the build does not refuse: it names each
such column, with the accuracy it reaches alone, in the build's output, the manifest
(``data.suspected_leaks``) and the card, so a person decides (``--drop``).

How: each model input alone — a category by its training rows' majority class per value, a
number by a depth-3 decision tree — is fitted on the training rows and scored on the validation
rows. A column is named when it reaches ``LEAK_ACCURACY`` there while the majority class alone
stays below ``LEAK_MAJORITY_CEILING`` (on a table that is nearly one class, any column looks
right). Written here because it is a dozen lines over scikit-learn's tree and pandas' groupby.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from factory._stages import Dataset

__all__ = ["LEAK_ACCURACY", "LEAK_MAJORITY_CEILING", "suspected_leaks"]

LEAK_ACCURACY = 0.99
LEAK_MAJORITY_CEILING = 0.95
_MISSING = "\x00missing"


def _category_accuracy(train: pd.Series, y_train: np.ndarray, held: pd.Series, y_held: np.ndarray) -> float:
    keys = train.astype(object).where(train.notna(), _MISSING)
    majority = pd.crosstab(keys.to_numpy(), y_train).idxmax(axis=1)  # each value's commonest class
    fallback = int(np.bincount(y_train).argmax())
    guess = held.astype(object).where(held.notna(), _MISSING).map(majority).fillna(fallback).astype(int)
    return float(np.mean(guess.to_numpy() == y_held))


def _number_accuracy(train: pd.Series, y_train: np.ndarray, held: pd.Series, y_held: np.ndarray) -> float:
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(max_depth=3, random_state=0)
    tree.fit(train.to_numpy(dtype=np.float64).reshape(-1, 1), y_train)  # NaN: sklearn trees route it
    return float(tree.score(held.to_numpy(dtype=np.float64).reshape(-1, 1), y_held))


def suspected_leaks(dataset: Dataset) -> list[dict[str, Any]]:
    """Each input that alone predicts the target on the validation rows (module docstring)."""
    train_rows, held_rows = dataset.split.train, dataset.split.validation
    y_train, y_held = dataset.y[train_rows], dataset.y[held_rows]
    if len(y_held) == 0:
        return []
    majority = float(np.bincount(y_held).max() / len(y_held))
    if majority >= LEAK_MAJORITY_CEILING:
        return []
    found: list[tuple[float, str, str]] = []
    for name in dataset.schema.columns:
        column = dataset.frame[name]
        score = _category_accuracy if name in dataset.schema.cat else _number_accuracy
        accuracy = score(column.iloc[train_rows], y_train, column.iloc[held_rows], y_held)
        if accuracy >= LEAK_ACCURACY:
            found.append((accuracy, dataset.schema.derived.get(name, name), name))  # a date's number names its date
    return [
        {
            "column": column,
            "input": name,
            "accuracy_alone": round(accuracy, 4),
            "majority_class_share": round(majority, 4),
        }
        for accuracy, column, name in sorted(found, key=lambda leak: -leak[0])
    ]


def leak_warning(leak: dict[str, Any]) -> str:
    """One suspected leak as a sentence for the build's output and the card."""
    return (
        f"{leak['column']!r} alone predicts the target on {leak['accuracy_alone']:.1%} of the validation rows "
        f"(the majority class alone {leak['majority_class_share']:.1%}): if it is known only after the outcome, "
        f"drop it with --drop {leak['column']}"
    )
