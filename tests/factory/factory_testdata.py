"""Shared test data for the factory tests: the segmentation table split once, and one small
fitted-able instance of every learner the search uses (the parity and SHAP tests run on both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from factory._schema import InputSchema, infer_schema, normalise_frame

TRAIN_ROWS = 6000


def learner_zoo() -> dict[str, Any]:
    """Unfitted, small, seeded instances keyed by FLAML learner name."""
    import lightgbm
    import xgboost
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    return {
        "lgbm": lightgbm.LGBMClassifier(n_estimators=30, num_leaves=8, verbose=-1, random_state=0),
        "xgboost": xgboost.XGBClassifier(n_estimators=30, max_depth=3, random_state=0),
        "rf": RandomForestClassifier(n_estimators=10, max_depth=5, random_state=0),
        "extra_tree": ExtraTreesClassifier(n_estimators=10, max_depth=5, random_state=0),
        "lrl1": LogisticRegression(penalty="l1", solver="saga", max_iter=300),
    }


def segmentation_table(csv: Path) -> tuple[InputSchema, list[str], pd.DataFrame, Any]:
    """(schema, classes, normalised frame, integer labels) of the segmentation Train.csv."""
    raw = pd.read_csv(csv)
    labels = raw.pop("Segmentation").astype(str)
    raw = raw.drop(columns=["ID"])
    schema = infer_schema(raw)
    frame = normalise_frame(raw, schema)
    classes = sorted(labels.unique())
    y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy()
    return schema, classes, frame, y
