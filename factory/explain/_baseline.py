"""Interpretable baselines beside the chosen model: logistic regression and a depth-3 tree.

Both are trained on the same preprocessed training rows as the search and scored on the same
test rows, so the card can show what the compact AutoML model buys over a model a person can
read. The tree's rules are kept as text for the card.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, export_text

__all__ = ["interpretable_baselines"]

TREE_DEPTH = 3


def _quality(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, average="macro", labels=list(range(n_classes)), zero_division=0)),
    }


def interpretable_baselines(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    features: list[str],
    classes: list[str],
    seed: int,
) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    x_train, y_train = train
    x_test, y_test = test
    k = len(classes)
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    logistic.fit(x_train, y_train)
    tree = DecisionTreeClassifier(max_depth=TREE_DEPTH, random_state=seed).fit(x_train, y_train)
    rules = export_text(tree, feature_names=list(features), class_names=list(classes), decimals=3)
    return {
        "logistic_regression": {
            "description": "standardised features, multinomial logistic regression (L2, C=1)",
            "test": _quality(y_test, logistic.predict(x_test), k),
        },
        "decision_tree": {
            "description": f"decision tree, max_depth={TREE_DEPTH}",
            "test": _quality(y_test, tree.predict(x_test), k),
            "rules": rules,
        },
    }
