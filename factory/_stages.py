"""The first stages of a build: data → labels → split → search.

Each stage is a function of the previous stage's result and the ``BuildConfig``, returning a
small frozen record, so a test can run one stage alone on a hand-made input. ``factory._verify``
holds the verify stage, ``factory._manifest`` the manifest stage and ``factory._artifact`` the
write stage; ``factory._build.build`` runs them in order.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from factory._columns import blank_to_missing
from factory._config import BuildConfig
from factory._data import MIN_ROWS_PER_CLASS, check_target, datetimes_as_text, is_quantity, read_table
from factory._latency import DeviceProfile, LatencyMeasurer, measure_candidate
from factory._leaks import suspected_leaks
from factory._manifest import frame_fingerprint
from factory._parity import encode_frame, stress_rows
from factory._schema import InputSchema, infer_schema, make_preprocessor, normalise_frame
from factory._search import ExportContext, ProgressHook, SearchResult, run_search
from factory._settings import TEST_FRACTION, VALIDATION_FRACTION
from factory.errors import FactoryInputError

__all__ = [
    "DataSplit",
    "Dataset",
    "Labelled",
    "Searched",
    "TableData",
    "load_data",
    "make_labels",
    "search_models",
    "split_data",
    "split_indices",
]

# Rows of the validation split the latency of a candidate is measured on (cycled, one at a time).
LATENCY_ROWS = 64


@dataclass(frozen=True)
class TableData:
    """Stage 1: the table as given, where it came from, and its fingerprint (before labelling)."""

    raw: pd.DataFrame
    source: str
    fingerprint: str
    notes: tuple[str, ...] = ()  # how the file was read beyond the defaults (factory._data)


def load_data(data: str | Path | pd.DataFrame, config: BuildConfig) -> TableData:
    """Read the table (or copy the frame) and check the columns the config names exist."""
    notes: tuple[str, ...] = ()
    if isinstance(data, pd.DataFrame):
        raw, source = datetimes_as_text(data.copy()), config.source_name or "DataFrame"
    else:
        read = read_table(data, sep=config.sep, sheet=config.sheet)
        raw, source, notes = read.frame, config.source_name or Path(data).name, read.notes
    unknown = [c for c in config.not_inputs if c not in raw.columns]
    if unknown:
        raise FactoryInputError(
            f"column {unknown[0]!r} (to drop) is not in the data; columns are: {', '.join(map(str, raw.columns))}"
        )
    return TableData(raw=raw, source=source, fingerprint=frame_fingerprint(raw), notes=notes)


@dataclass(frozen=True)
class Labelled:
    """Stage 2: the table with its label column filled, the labels, and how they were made."""

    table: pd.DataFrame
    labels: pd.Series  # config.target as strings, checked (>= 2 classes, enough rows each)
    label_rule: Mapping[str, Any] | None = None
    segments_report: dict[str, Any] | None = None  # labels="clusters"
    segment_profiles: dict[str, Any] | None = None  # labels="clusters"
    few_report: dict[str, Any] | None = None  # labels="few"
    notes: tuple[str, ...] = ()  # rows left out, and why


def make_labels(data: TableData, config: BuildConfig) -> Labelled:
    """The classes: the given column, discovered segments, or a few labels spread."""
    target = str(config.target)
    table = data.raw.copy()
    if config.labels == "clusters":
        from factory.segments import discover_segments

        if target in table.columns:
            raise FactoryInputError(
                f"--labels clusters writes the segment into column {target!r}, which the data already has; "
                "name another with --target"
            )
        found = discover_segments(
            table,
            exclude=config.not_inputs,
            n_segments=config.n_segments,
            method=config.cluster_method,
            dormant_days=config.dormant_days,
            seed=config.seed,
        )
        table[target] = found.labels.to_numpy()
        rule = config.label_rule or found.label_rule
        return Labelled(table, check_target(table, target), rule, found.report, found.profiles)
    if config.labels == "few":
        from factory.labels import propagate_labels

        few = propagate_labels(table, target, exclude=config.not_inputs, seed=config.seed)
        table[target] = few.labels.to_numpy()
        rule = config.label_rule or {"kind": "few labels", "method": few.report["method"]}
        return Labelled(table, check_target(table, target), rule, few_report=few.report)
    table, notes = _labelled_rows(table, target)
    return Labelled(table, check_target(table, target), config.label_rule, notes=notes)


def _labelled_rows(table: pd.DataFrame, target: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The rows the model can learn from, and notes on the rest. A table as it comes has a few
    customers not yet labelled, and sometimes a class with a handful of rows: both are left out
    with a note, not a refusal (``--labels few`` spreads labels to unlabelled rows instead; a
    class needs ``MIN_ROWS_PER_CLASS`` rows to reach train, validation and test — AutoGluon
    drops such classes the same way). ``check_target`` refuses what is left if it is unusable."""
    if target not in table.columns:
        return table, ()  # check_target names the columns there are
    notes: list[str] = []
    empty = blank_to_missing(table[target]).isna()
    if empty.all():
        raise FactoryInputError(f"target column {target!r} is empty in every row")
    if empty.any():
        n = int(empty.sum())
        notes.append(
            f"{n} row{'s' if n != 1 else ''} with an empty {target!r} left out: no label to learn from "
            "(--labels few spreads labels to them)"
        )
        table = table.loc[~empty.to_numpy()].reset_index(drop=True)
    if is_quantity(table[target]):
        return table, tuple(notes)  # a quantity: check_target says so
    counts = table[target].astype(str).value_counts()
    rare = counts[counts < MIN_ROWS_PER_CLASS]
    if len(rare) and (counts >= MIN_ROWS_PER_CLASS).sum() >= 2:
        shown = ", ".join(f"{name!r} ({int(n)})" for name, n in rare.items())
        notes.append(
            f"class{'es' if len(rare) != 1 else ''} {shown} of {target!r} left out: fewer than "
            f"{MIN_ROWS_PER_CLASS} rows, too few to learn and test; the model never predicts "
            f"{'them' if len(rare) != 1 else 'it'}"
        )
        table = table.loc[~table[target].astype(str).isin(rare.index).to_numpy()].reset_index(drop=True)
    return table, tuple(notes)


@dataclass(frozen=True)
class DataSplit:
    """Row positions (into ``Dataset.frame`` / ``BuildResult.frame``) of the three parts.

    The search trains on ``train`` and scores on ``validation``; ``test`` is never seen by the
    search and feeds the reported metrics, the parity gate and the golden samples.
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_indices(y: np.ndarray, seed: int) -> DataSplit:
    """Stratified train / validation / test positions (60 / 20 / 20 by the settings)."""
    index = np.arange(len(y))
    rest, test = train_test_split(index, test_size=TEST_FRACTION, stratify=y, random_state=seed)
    train, val = train_test_split(
        rest, test_size=VALIDATION_FRACTION / (1 - TEST_FRACTION), stratify=y[rest], random_state=seed
    )
    return DataSplit(train=train, validation=val, test=test)


@dataclass(frozen=True)
class Dataset:
    """Stage 3: the model's inputs (normalised), the classes, and the split."""

    schema: InputSchema
    frame: pd.DataFrame  # normalised inputs, one row per table row
    classes: list[str]  # sorted class names; y holds positions in this list
    y: np.ndarray
    split: DataSplit

    @property
    def train(self) -> pd.DataFrame:
        return self.frame.iloc[self.split.train]

    @property
    def validation(self) -> pd.DataFrame:
        return self.frame.iloc[self.split.validation]

    @property
    def test(self) -> pd.DataFrame:
        return self.frame.iloc[self.split.test]

    @functools.cached_property
    def suspected_leaks(self) -> list[dict[str, Any]]:
        """Inputs that alone predict the target (factory._leaks); computed once, read by the
        build's early warning and by the manifest."""
        return suspected_leaks(self)

    @property
    def labels(self) -> np.ndarray:
        """Class name of every row (object array)."""
        names: np.ndarray = np.asarray(self.classes, dtype=object)[self.y]
        return names


def split_data(labelled: Labelled, config: BuildConfig) -> Dataset:
    """Infer the schema of the inputs, normalise them, encode the classes, split the rows."""
    features = labelled.table.drop(columns=[str(config.target), *config.not_inputs])
    schema = infer_schema(features, date_columns=config.date_formats, reference_date=config.reference_moment)
    frame = normalise_frame(features, schema)
    classes = sorted(labelled.labels.unique().tolist())
    y = labelled.labels.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    return Dataset(schema=schema, frame=frame, classes=classes, y=y, split=split_indices(y, config.seed))


def latency_rows(dataset: Dataset) -> pd.DataFrame:
    """The rows every candidate is timed on, in the search and again on the artifact: validation
    rows as they are, then the kinds a till also sends — one input missing, every input missing,
    unseen categories (``factory._parity.stress_rows``) — a quarter of them, so a graph whose
    cost depends on the row (an unseen string, an imputed number) is timed on such rows too."""
    real = dataset.validation.iloc[: LATENCY_ROWS - LATENCY_ROWS // 4]
    stressed = stress_rows(dataset.validation, dataset.schema, LATENCY_ROWS // 8, seed=0)
    n_missing = stressed.n_missing
    parts = [real, stressed.frame.iloc[:n_missing]]
    if stressed.n_unseen:
        parts.append(stressed.frame.iloc[n_missing:])
    return pd.concat(parts, ignore_index=True).iloc[:LATENCY_ROWS]


@dataclass(frozen=True)
class Searched:
    """Stage 4: the fitted preprocessing, how candidates are exported and timed, and the search."""

    preprocessor: Pipeline
    context: ExportContext
    search: SearchResult


def search_models(
    dataset: Dataset,
    config: BuildConfig,
    *,
    progress: ProgressHook | None = None,
    measure: LatencyMeasurer = measure_candidate,
    profile: DeviceProfile | None = None,
) -> Searched:
    """Fit our preprocessing on train and run the budgeted FLAML search on its output.

    ``profile`` is the target device's (default: ``config.load_device_profile()``).
    """
    split = dataset.split
    train = dataset.train
    preprocessor = make_preprocessor(dataset.schema, numeric_imputer=config.numeric_imputer, seed=config.seed)
    preprocessor.fit(train)
    context = ExportContext(
        preprocessor=preprocessor,
        schema=dataset.schema,
        classes=dataset.classes,
        latency_feeds=encode_frame(latency_rows(dataset), dataset.schema),
        profile=profile or config.load_device_profile(),
    )
    search = run_search(
        config,
        context,
        train=(preprocessor.transform(train), dataset.y[split.train]),
        validation=(preprocessor.transform(dataset.validation), dataset.y[split.validation]),
        progress=progress,
        measure=measure,
    )
    # FLAML always finishes its first trial, however small the budget; a budget that the first
    # trial alone overran was too small to search anything, so it is refused, not honoured.
    first_trial_s = search.trials[0].elapsed_s if search.trials else math.inf
    if first_trial_s > config.time_budget_s:
        raise FactoryInputError(
            f"time budget {config.time_budget_s:g} s is too small for a single trial on {len(train)} rows "
            f"(the first trial took {first_trial_s:.2f} s); raise --time-budget-s"
        )
    return Searched(preprocessor=preprocessor, context=context, search=search)
