"""build(): customer table in, verified and signed artifact out (the factory's one entry point).

A build is a pipeline of named stages, each a function of the previous stage's record and the
``BuildConfig`` (testable alone):

    data → labels → split → search → rerank → verify → manifest → write
    (_stages)                        (_rerank) (_verify) (_assemble) (_artifact)

load and check the table → make or check the labels → infer the schema, stratified
train/validation/test split → fit our preprocessing on train, budgeted FLAML search → on a
small table, the best candidates ordered by cross-validation instead of one holdout → for the
best feasible candidates in order: export the whole graph, run the parity gate, re-measure
latency and size on the artifact → assemble the manifest → write the first candidate that passed
everything, atomically and signed. Nothing is written before every check has passed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge_runtime.artifact import Manifest
from factory._artifact import write_build
from factory._assemble import assemble_manifest
from factory._config import BuildConfig
from factory._evaluate import json_safe
from factory._latency import LatencyMeasurer
from factory._leaks import leak_warning
from factory._rerank import rerank
from factory._schema import InputSchema
from factory._search import ProgressHook, SearchResult
from factory._stages import Dataset, DataSplit, load_data, make_labels, search_models, split_data
from factory._verify import Verified, verify

__all__ = ["BeforeWrite", "BuildResult", "build"]

#: ``build(before_write=...)``: (manifest, dataset, verified) -> the manifest to sign and write.
BeforeWrite = Callable[[dict[str, Any], Dataset, Verified], dict[str, Any]]


@dataclass(frozen=True)
class BuildResult:
    """What build() made: the artifact, its manifest, the search, and the data it was judged on.

    ``frame`` holds the model's inputs for every row of the table, normalised as the native
    pipeline reads them; ``labels`` the class name of every row; ``split`` the row positions
    of train / validation / test in both. ``test_predictions`` and ``test_probabilities`` are
    the written graph's outputs on ``frame.iloc[split.test]`` (probability columns in the order
    of ``classes``). Benchmarks and reports compare against these instead of re-deriving them.
    """

    artifact_dir: Path
    manifest: dict[str, Any]  # manifest.json as written (plain JSON)
    typed_manifest: Manifest  # the same, as the artifact contract reads it
    search: SearchResult
    native_pipeline: Any  # sklearn Pipeline(preprocess, model) the artifact reproduces
    config: BuildConfig
    schema: InputSchema
    frame: pd.DataFrame
    classes: list[str]
    labels: np.ndarray
    split: DataSplit
    test_predictions: np.ndarray
    test_probabilities: np.ndarray

    @property
    def model_version(self) -> str:
        return str(self.manifest["model_version"])


def new_version(out_dir: Path, name: str) -> str:
    """A UTC timestamp version not yet used under ``out_dir/name``."""
    moment = dt.datetime.now(dt.UTC).replace(microsecond=0)
    while True:
        version = moment.strftime("%Y%m%dT%H%M%SZ")
        if not (out_dir / name / version).exists():
            return version
        moment += dt.timedelta(seconds=1)


def build(
    data: str | Path | pd.DataFrame,
    config: BuildConfig | None = None,
    *,
    progress: ProgressHook | None = None,
    measure: LatencyMeasurer | None = None,
    before_write: BeforeWrite | None = None,
    warn: Callable[[str], None] | None = None,
    **params: Any,
) -> BuildResult:
    """Search, export, verify and sign a segment classifier for a labelled customer table.

    ``data`` is a path (CSV/TSV/Parquet) or a DataFrame. The options are a ``BuildConfig``,
    given whole, as keywords (``build("customers.csv", target="segment", id_column="ID")``)
    or both (keywords override the config's fields); see ``BuildConfig`` for each. ``progress``
    sees every trial; ``measure`` replaces the latency measurement (tests feed fixed numbers).
    ``before_write(manifest, dataset, verified)`` returns the manifest to sign, after every
    check has passed and before anything is written (a retrain adds its lineage and gate).
    ``warn`` hears each suspected leak (factory._leaks) before the search starts.
    Raises FactoryInputError, BudgetError or ParityError; in every error case nothing is written.
    """
    if config is None:
        config = BuildConfig(**params)
    elif params:
        config = config.replace(**params)
    profile = config.load_device_profile()  # a bad profile is refused before the data is read
    timing = {} if measure is None else {"measure": measure}

    table = load_data(data, config)
    labelled = make_labels(table, config)
    dataset = split_data(labelled, config)
    if warn is not None:
        for leak in dataset.suspected_leaks:
            warn(leak_warning(leak))
    searched = rerank(search_models(dataset, config, progress=progress, profile=profile, **timing), dataset, config)
    verified = verify(searched, dataset, config, **timing)

    name = config.name or Path(table.source).stem.lower().replace("_", "-")
    out_dir = Path(config.out_dir)
    version = new_version(out_dir, name)
    manifest = assemble_manifest(config, table, labelled, dataset, searched, verified, name=name, version=version)
    if before_write is not None:
        manifest = before_write(manifest, dataset, verified)
    written = write_build(
        out_dir / name / version,
        manifest=manifest,
        model_bytes=verified.model_bytes,
        float_model_bytes=None if verified.float_graph is None else verified.float_graph.model_bytes,
        trials=[json_safe(t.to_dict()) for t in searched.search.trials],
        key_dir=None if config.key_dir is None else Path(config.key_dir),
    )
    from sklearn.pipeline import Pipeline

    return BuildResult(
        artifact_dir=out_dir / name / version,
        manifest=written.to_json(),
        typed_manifest=written,
        search=searched.search,
        native_pipeline=Pipeline([*searched.preprocessor.steps, ("model", verified.native_model)]),
        config=config,
        schema=dataset.schema,
        frame=dataset.frame,
        classes=dataset.classes,
        labels=dataset.labels,
        split=dataset.split,
        test_predictions=verified.test_labels,
        test_probabilities=verified.test_proba,
    )
