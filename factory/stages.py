"""The build's stages, public so a benchmark or a notebook can run one of them alone.

``factory.build`` runs them in this order (docs/ARTIFACT.md describes what each one adds to
the artifact)::

    data = load_data(path, config)            # read, infer and normalise the table
    labelled = make_labels(data, config)      # given target, value tier, clusters or few labels
    dataset = split_data(labelled, config)    # stratified train / validation / test
    searched = search_models(dataset, config) # FLAML under the latency and size budgets
    searched = rerank(searched, dataset, config)  # small tables: best candidates by k-fold CV

and, to time a candidate as the verify stage times an artifact, ``device_timing`` (the graph
the device runs, fed the rows the search used) and ``measure_artifact`` (median of rounds'
p99). This module only re-exports: the stages live in private modules so they can change shape
without every import site following.
"""

from factory._float_graph import device_timing
from factory._latency import measure_artifact
from factory._rerank import rerank
from factory._stages import DataSplit, load_data, make_labels, search_models, split_data

__all__ = [
    "DataSplit",
    "device_timing",
    "load_data",
    "make_labels",
    "measure_artifact",
    "rerank",
    "search_models",
    "split_data",
]
