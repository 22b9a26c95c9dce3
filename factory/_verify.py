"""The verify stage: the best feasible candidate whose artifact passes parity and re-measures
within budget.

The search timed each candidate once, briefly; the artifact is timed again, longer, before it
is written (``measure_artifact``), and its graph must reproduce the native pipeline on the test
rows plus generated stress rows. The stress rows are made once here and kept for the golden
samples. One onnxruntime session per candidate serves the gate, the timing and the held-out
predictions. ``measure`` is a seam: a test passes fixed numbers to prove the refusal and the
fall-back to the next candidate without depending on this machine's load.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd

from edge_runtime.artifact import Parity
from edge_runtime.session import make_session
from factory._config import BuildConfig
from factory._float_graph import FloatGraphExport, device_timing, gate_float_graph
from factory._latency import LatencyMeasurer, LatencyReport, measure_artifact
from factory._parity import StressRows, check_parity, onnx_predict, stress_rows
from factory._search import Candidate, SearchResult
from factory._settings import PARITY_SYNTHETIC_ROWS
from factory._stages import Dataset, Searched
from factory.errors import BudgetError, ParityError

__all__ = ["Verified", "verify"]


@dataclass(frozen=True)
class Verified:
    """The candidate that will be written, with the evidence the manifest records."""

    candidate: Candidate
    model_bytes: bytes
    session: ort.InferenceSession  # single-threaded, as a till runs it
    parity: Parity
    latency: LatencyReport
    stressed: StressRows  # the gate's generated rows (golden samples reuse them)
    test_labels: np.ndarray  # the graph's predicted class name per test row
    test_proba: np.ndarray  # the graph's probabilities per test row, columns in class order
    rejected: list[dict[str, Any]] = field(default_factory=list)  # better candidates passed over, and why
    float_graph: FloatGraphExport | None = None  # the gated float-only graph the device runs (None: raw)
    model: Any = None  # the native model the graph reproduces (refit on train + validation; None: as searched)
    refit_rows: int = 0  # rows the exported model was refit on (0: not refit)

    @property
    def native_model(self) -> Any:
        return self.candidate.model if self.model is None else self.model


def _no_candidate(search: SearchResult, config: BuildConfig) -> BudgetError:
    budgets = config.budgets
    closest = "; ".join(
        f"{t.learner} p99 {t.latency_p99_us:.1f} µs, {t.size_bytes / 1024:.1f} KB, quality {t.quality:.4f}"
        for t in search.closest()
    )
    return BudgetError(
        f"no candidate met the budgets (p99 <= {budgets.latency_p99_us:g} µs, size <= "
        f"{budgets.size_bytes / 1024:g} KB) in {len(search.trials)} trials; closest: {closest or 'none'}"
    )


def _native_proba(preprocessor: Any, model: Any) -> Any:
    def predict(frame: pd.DataFrame) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="X does not have valid feature names")
            return np.asarray(model.predict_proba(preprocessor.transform(frame)))

    return predict


def _refitter(searched: Searched, dataset: Dataset) -> Callable[[Candidate], tuple[Any, onnx.ModelProto]]:
    """Refit a candidate's configuration on train + validation rows, and export it.

    The search chose on validation rows it did not train on; the exported model then learns
    from those rows too (a fifth more data: on a 2.2k-row table that is what separates the
    search's pick from a reference trained on 80 %). Same hyperparameters, so the same kind of
    graph; it is gated and timed again like any candidate. A model that cannot be cloned or
    converted after refitting is exported as searched.
    """
    from sklearn.base import clone

    rows = np.concatenate([dataset.split.train, dataset.split.validation])
    matrix = searched.preprocessor.transform(dataset.frame.iloc[rows])
    labels = dataset.y[rows]

    def refit(candidate: Candidate) -> tuple[Any, onnx.ModelProto]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = clone(candidate.model).fit(matrix, labels)
            return model, searched.context.graph(model)
        except Exception:  # noqa: BLE001 - a refit is an improvement, never a reason to fail
            return candidate.model, candidate.graph

    return refit


def verify(
    searched: Searched,
    dataset: Dataset,
    config: BuildConfig,
    *,
    measure: LatencyMeasurer = measure_artifact,
) -> Verified:
    """The first candidate (best loss first) passing the parity gate and the re-measured budgets.

    Raises ``BudgetError`` when the search found nothing feasible or every artifact re-measured
    over budget, ``ParityError`` when every candidate failing was refused by the gate.
    """
    search, context = searched.search, searched.context
    if not search.candidates:
        raise _no_candidate(search, config)
    budgets = config.budgets
    test = dataset.test
    stressed = stress_rows(test, dataset.schema, PARITY_SYNTHETIC_ROWS, config.seed)
    failures: list[str] = []
    rejected: list[dict[str, Any]] = []
    parity_failed = False
    refit = _refitter(searched, dataset) if config.refit_full else None
    n_refit = len(dataset.split.train) + len(dataset.split.validation)

    def attempt(candidate: Candidate, model: Any, graph: onnx.ModelProto, refit_rows: int) -> Verified | str:
        """The Verified artifact of one (model, graph), or why it was refused."""
        nonlocal parity_failed
        model_bytes = graph.SerializeToString()
        session = make_session(model_bytes)
        native = _native_proba(searched.preprocessor, model)
        try:
            parity = check_parity(session, native, test, dataset.schema, dataset.classes, stressed=stressed)
        except ParityError as exc:
            parity_failed = True
            return str(exc)
        floated = gate_float_graph(graph, native, test, dataset.schema, dataset.classes, stressed)
        float_graph = floated if isinstance(floated, FloatGraphExport) else None
        # Timed as the device will run it (the float graph when it passed its gate), on a
        # fresh session, as the search timed it and as a till's single-row session is: the
        # gate's batch run grows a session's memory arena, measured ~1.5 µs slower per row.
        timed, feeds = (model_bytes, context.latency_feeds)
        if float_graph is not None:
            timed, feeds = device_timing(model_bytes, context.latency_feeds, *context.widths)
        latency = measure(make_session(timed), feeds, context.profile)
        # Beside the search's own measurement in search_log.jsonl: did the search predict it?
        candidate.trial.remeasured_p50_us, candidate.trial.remeasured_p99_us = latency.p50_us, latency.p99_us
        if latency.p99_us <= budgets.latency_p99_us and len(model_bytes) <= budgets.size_bytes:
            labels, proba = onnx_predict(session, test, dataset.schema)
            return Verified(
                candidate, model_bytes, session, parity, latency, stressed, labels, proba, rejected, float_graph,
                model=model, refit_rows=refit_rows,
            )  # fmt: skip
        return f"re-measured p99 {latency.p99_us:.1f} µs, {len(model_bytes)} bytes"

    for candidate in search.candidates:
        # The refit first (when asked); the candidate as searched — the graph the search timed —
        # when the refit is refused, before moving on to the next candidate.
        variants: list[tuple[Any, onnx.ModelProto, int]] = []
        if refit is not None:
            model, graph = refit(candidate)
            if model is not candidate.model:
                variants.append((model, graph, n_refit))
        variants.append((candidate.model, candidate.graph, 0))
        for model, graph, refit_rows in variants:
            outcome = attempt(candidate, model, graph, refit_rows)
            if isinstance(outcome, Verified):
                return outcome
            reason = outcome + (f" (refit on {refit_rows} rows)" if refit_rows else "")
            failures.append(f"trial {candidate.trial.index} ({candidate.trial.learner}): {reason}")
            rejected.append({"trial_index": candidate.trial.index, "reason": reason})
    if parity_failed:
        raise ParityError("no feasible candidate passed the parity gate: " + " | ".join(failures))
    closest = min(
        (c.trial for c in search.candidates if c.trial.remeasured_p99_us is not None),
        key=lambda t: (t.remeasured_p99_us or 0.0, t.size_bytes),
    )
    raise BudgetError(
        f"none of the {len(search.candidates)} feasible candidates stayed within budget when its artifact was "
        f"re-measured (p99 <= {budgets.latency_p99_us:g} µs, size <= {budgets.size_bytes / 1024:g} KB); closest: "
        f"trial {closest.index} ({closest.learner}) re-measured p99 {closest.remeasured_p99_us:.1f} µs "
        f"(search measured {closest.latency_p99_us:.1f} µs), {closest.size_bytes} bytes: " + " | ".join(failures)
    )
