"""The parity gate: the exported graph must reproduce the native pipeline before it is written.

Rows checked: held-out rows as they are, plus generated rows with a missing value in every
column and with categories never seen in training — the cases where training, graph and edge
most easily disagree (a NaN inside a string tensor becomes "nan" in onnxruntime).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort
import pandas as pd

from edge_runtime.artifact import Parity
from edge_runtime.encoding import InputLayout, encode_columns
from edge_runtime.session import make_session
from factory._schema import InputSchema
from factory._settings import (
    MISSING_TOKEN,
    PARITY_MIN_LABEL_AGREEMENT,
    PARITY_PROB_TOLERANCE,
    PARITY_SYNTHETIC_ROWS,
)
from factory.errors import ParityError

__all__ = ["ParityReport", "StressRows", "check_parity", "encode_frame", "onnx_predict", "stress_rows"]

UNSEEN_CATEGORY = "__never_seen_in_training__"


# The gate's result is the manifest's ``parity`` section, typed by the artifact contract.
ParityReport = Parity


class StressRows(NamedTuple):
    """Generated rows the gate adds to the held-out ones. Row 0 has every input missing; when
    the schema has strings, the last row has an unseen category in each (golden samples use both)."""

    frame: pd.DataFrame
    n_missing: int
    n_unseen: int


def stress_rows(frame: pd.DataFrame, schema: InputSchema, n: int, seed: int) -> StressRows:
    """Copies of real rows with one column blanked each (cycling), all columns blanked, and
    every string column set to an unseen category."""
    rng = np.random.default_rng(seed)
    base = frame.iloc[rng.integers(0, len(frame), size=n)].reset_index(drop=True)
    columns = schema.columns
    missing = base.copy()
    for i in range(n):
        missing.iat[i, missing.columns.get_loc(columns[i % len(columns)])] = np.nan
    missing.iloc[0, :] = np.nan  # one row with nothing known at all
    parts = [missing]
    n_unseen = 0
    if schema.cat:
        unseen = base.copy()
        for name in schema.cat:
            unseen[name] = UNSEEN_CATEGORY
        parts.append(unseen)
        n_unseen = n
    return StressRows(pd.concat(parts, ignore_index=True), n, n_unseen)


def encode_frame(frame: pd.DataFrame, schema: InputSchema) -> dict[str, np.ndarray]:
    """A normalised frame as graph inputs, encoded by the edge's own encoder."""
    layout = InputLayout(num=tuple(schema.num), cat=tuple(schema.cat), missing_token=MISSING_TOKEN)
    return encode_columns(layout, {name: frame[name].tolist() for name in schema.columns}, len(frame))


def onnx_predict(
    session: ort.InferenceSession, frame: pd.DataFrame, schema: InputSchema
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of the graph for a normalised frame, encoded as the edge does."""
    labels, proba = session.run(["label", "probabilities"], encode_frame(frame, schema))
    return np.asarray(labels), np.asarray(proba)


def check_parity(
    model: bytes | ort.InferenceSession,
    native_proba: Any,
    held_out: pd.DataFrame,
    schema: InputSchema,
    classes: list[str],
    *,
    seed: int = 0,
    stressed: StressRows | None = None,
    predict: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]] | None = None,
) -> Parity:
    """Compare graph and native pipeline; raise ParityError beyond tolerance.

    ``stressed`` are the generated rows (default: ``PARITY_SYNTHETIC_ROWS`` made with ``seed``);
    a build makes them once and reuses them for the golden samples. ``predict`` runs a graph
    of another layout (the float-only graph, ``factory._float_graph``) on the same rows;
    by default the raw-column ``session`` is run on the edge's own encoding.
    """
    if stressed is None:
        stressed = stress_rows(held_out, schema, PARITY_SYNTHETIC_ROWS, seed)
    n_missing, n_unseen = stressed.n_missing, stressed.n_unseen
    frame = pd.concat([held_out.reset_index(drop=True), stressed.frame], ignore_index=True)
    session = make_session(model) if isinstance(model, bytes) else model
    labels, proba = onnx_predict(session, frame, schema) if predict is None else predict(frame)
    expected_proba = np.asarray(native_proba(frame))
    expected_labels = np.asarray(classes, dtype=object)[expected_proba.argmax(axis=1)]
    agreement = float(np.mean(labels.astype(str) == expected_labels.astype(str)))
    max_diff = float(np.max(np.abs(proba.astype(np.float64) - expected_proba)))
    report = Parity(
        rows=len(frame),
        rows_with_missing=n_missing,
        rows_with_unseen_category=n_unseen,
        label_agreement=agreement,
        max_abs_prob_diff=max_diff,
        passed=agreement >= PARITY_MIN_LABEL_AGREEMENT and max_diff <= PARITY_PROB_TOLERANCE,
    )
    if not report.passed:
        raise ParityError(
            f"ONNX graph disagrees with the native model: labels agree on {agreement:.4%} of "
            f"{len(frame)} rows (need >= {PARITY_MIN_LABEL_AGREEMENT:.1%}), max probability "
            f"difference {max_diff:.2e} (need <= {PARITY_PROB_TOLERANCE:.0e}); not exported"
        )
    return report
