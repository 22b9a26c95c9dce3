"""The physical floor of a classification, and what was tried to get closer to it.

Prints one JSON object::

    python benchmarks/edge_floor.py --artifact exported_models/<name>/<version> [--public-key K]
    python benchmarks/edge_floor.py --artifact DIR --smoke      # seconds: is it working

Three numbers make the floor (docs/DESIGN.md §2: a fraction of a µs of tree work per row, the rest is
overhead):

* **node visits per row**: the ensemble is walked (per tree, the depth of the leaf each row
  reaches) on the very feature matrix the trees see (the graph's own imputed/coded tensor);
* **ns per visit**: the float graph's batch run on one thread over those rows, divided by
  their visits (per-call overhead amortised away);
* **per-call overhead**: a one-node (``Identity``) graph on one row, the same session options
  as the device's, called the cheapest way onnxruntime offers (the lower of ``session.run``
  and a run through IOBinding with input and output bound once, which is how the device calls
  the float graph).

``floor_us = overhead + visits_per_row * ns_per_visit / 1000`` is what one row cannot beat
with onnxruntime from Python; the measured single-record numbers sit next to it. The same run
tries the alternatives the issue asked for (IOBinding, ``run_with_ort_values``, batch threads
and spinning, the ``ai.onnx.ml`` opset-5 ``TreeEnsemble`` operator) on the same rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: python benchmarks/edge_floor.py
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

__all__ = ["TreeWalk", "minimal_graph", "node_visits", "tree_ensemble_v5"]

TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")


# ---------------------------------------------------------------------------- the ensemble
def _tree_node(model: onnx.ModelProto) -> onnx.NodeProto:
    nodes = [n for n in model.graph.node if n.op_type in TREE_OPS]
    if len(nodes) != 1:
        raise ValueError(f"expected one tree-ensemble node, found {[n.op_type for n in model.graph.node]}")
    found: onnx.NodeProto = nodes[0]
    return found


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class TreeWalk:
    """A TreeEnsemble{Classifier,Regressor}'s nodes as arrays, walked row-vectorised."""

    def __init__(self, node: onnx.NodeProto) -> None:
        a = _attrs(node)
        trees = np.asarray(a["nodes_treeids"], dtype=np.int64)
        ids = np.asarray(a["nodes_nodeids"], dtype=np.int64)
        position = {(int(t), int(i)): k for k, (t, i) in enumerate(zip(trees, ids, strict=True))}
        self.modes = np.array([m.decode() if isinstance(m, bytes) else m for m in a["nodes_modes"]])
        self.feature = np.asarray(a["nodes_featureids"], dtype=np.int64)
        self.value = np.asarray(a["nodes_values"], dtype=np.float32)
        self.leaf = self.modes == "LEAF"
        true_ids, false_ids = a["nodes_truenodeids"], a["nodes_falsenodeids"]
        self.true = np.array(
            [position.get((int(t), int(i)), k) for k, (t, i) in enumerate(zip(trees, true_ids, strict=True))]
        )
        self.false = np.array(
            [position.get((int(t), int(i)), k) for k, (t, i) in enumerate(zip(trees, false_ids, strict=True))]
        )
        tracks = a.get("nodes_missing_value_tracks_true") or [0] * len(ids)
        self.missing_true = np.asarray(tracks, dtype=bool)
        self.roots = np.array([position[(int(t), 0)] for t in sorted(set(trees.tolist()))])
        self.n_nodes = len(ids)

    @property
    def n_trees(self) -> int:
        return len(self.roots)

    def _goes_true(self, at: np.ndarray, x: np.ndarray) -> np.ndarray:
        value, mode = self.value[at], self.modes[at]
        result = np.select(
            [mode == "BRANCH_LEQ", mode == "BRANCH_LT", mode == "BRANCH_GTE", mode == "BRANCH_GT", mode == "BRANCH_EQ"],
            [x <= value, x < value, x >= value, x > value, x == value],
            default=x != value,
        )
        goes: np.ndarray = result | (np.isnan(x) & self.missing_true[at])
        return goes

    def visits(self, features: np.ndarray) -> np.ndarray:
        """Branch nodes evaluated per row, summed over the trees (each tree: its leaf's depth)."""
        n = len(features)
        total: np.ndarray = np.zeros(n, dtype=np.int64)
        rows = np.arange(n)
        for root in self.roots:
            at = np.full(n, root)
            active = ~self.leaf[at]
            while active.any():
                where = rows[active]
                here = at[where]
                go = self._goes_true(here, features[where, self.feature[here]])
                at[where] = np.where(go, self.true[here], self.false[here])
                total[where] += 1
                active = ~self.leaf[at]
        return total


def _with_output(model: onnx.ModelProto, name: str) -> bytes:
    """A copy of ``model`` that also outputs the intermediate tensor ``name``."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return bytes(copy.SerializeToString())


def node_visits(model_bytes: bytes, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Walk the ensemble on the features the trees see for ``feeds`` (any graph layout)."""
    from edge_runtime.session import make_session

    model = onnx.load_from_string(model_bytes)
    node = _tree_node(model)
    session = make_session(_with_output(model, node.input[0]))
    features = session.run([node.input[0]], dict(feeds))[0]
    walk = TreeWalk(node)
    visits = walk.visits(np.asarray(features, dtype=np.float32))
    return {
        "operator": node.op_type,
        "trees": walk.n_trees,
        "nodes": walk.n_nodes,
        "rows": len(visits),
        "visits_per_row_mean": float(visits.mean()),
        "visits_per_row_p99": float(np.percentile(visits, 99)),
        "depth_per_tree_mean": float(visits.mean() / max(walk.n_trees, 1)),
    }


def minimal_graph(width: int) -> bytes:
    """One ``Identity`` on a float ``[N, width]`` input: what a call costs with no work in it."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "overhead",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, width])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


# ---------------------------------------------------------------------------- opset-5 operator
_V5_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5}
_V5_POST = {"NONE": 0, "SOFTMAX": 1, "LOGISTIC": 2, "SOFTMAX_ZERO": 3, "PROBIT": 4}


def tree_ensemble_v5(model_bytes: bytes) -> bytes | str:
    """The float graph with its TreeEnsembleClassifier rewritten as ``ai.onnx.ml`` opset-5
    ``TreeEnsemble`` + ``ArgMax``; or why that is not possible for this model.

    Opset 5 gives each leaf *one* target: LightGBM/XGBoost multiclass trees (one class per
    tree) fit; a random forest's leaves hold every class's weight and would need one tree copy
    per class, so it is reported as not applicable rather than converted at a disadvantage.
    """
    model = onnx.load_from_string(model_bytes)
    node = _tree_node(model)
    a = _attrs(node)
    if node.op_type != "TreeEnsembleClassifier":
        return "not a classifier"
    classes = list(a.get("classlabels_int64s") or [])
    if len(classes) < 3:
        return "binary classifier (one score column): not converted"
    if any(float(v) for v in a.get("base_values") or []):
        return "base_values are not supported by opset-5 TreeEnsemble"
    walk = TreeWalk(node)
    trees = np.asarray(a["nodes_treeids"])
    ids = np.asarray(a["nodes_nodeids"])
    position = {(int(t), int(i)): k for k, (t, i) in enumerate(zip(trees, ids, strict=True))}
    leaf_of: dict[int, tuple[int, float]] = {}
    for t, i, c, w in zip(a["class_treeids"], a["class_nodeids"], a["class_ids"], a["class_weights"], strict=True):
        k = position[(int(t), int(i))]
        if k in leaf_of:
            return "leaves carry several class weights (e.g. a random forest): opset 5 has one target per leaf"
        leaf_of[k] = (int(c), float(w))
    interior = [k for k in range(walk.n_nodes) if not walk.leaf[k]]
    index = {k: j for j, k in enumerate(interior)}
    leaves = sorted(leaf_of)
    leaf_index = {k: j for j, k in enumerate(leaves)}

    def target(k: int) -> tuple[int, int]:
        return (1, leaf_index[k]) if walk.leaf[k] else (0, index[k])

    nodes_true = [target(int(walk.true[k])) for k in interior]
    nodes_false = [target(int(walk.false[k])) for k in interior]
    roots = []
    for r in walk.roots:
        if walk.leaf[r]:
            return "a tree is a single leaf: not converted"
        roots.append(index[int(r)])
    post_name = a.get("post_transform", b"NONE")
    post_name = post_name.decode() if isinstance(post_name, bytes) else str(post_name)
    if post_name not in ("NONE", "SOFTMAX"):
        return f"post_transform {post_name} not converted"
    # The softmax is a separate node: onnxruntime 1.23's TreeEnsemble post_transform=SOFTMAX
    # gave probabilities 0.35 away from the classifier's on the same raw scores (measured).
    v5 = helper.make_node(
        "TreeEnsemble",
        [node.input[0]],
        ["v5_scores"],
        domain="ai.onnx.ml",
        n_targets=len(classes),
        aggregate_function=1,
        post_transform=_V5_POST["NONE"],
        tree_roots=roots,
        nodes_featureids=[int(walk.feature[k]) for k in interior],
        nodes_modes=numpy_helper.from_array(
            np.array([_V5_MODES[str(walk.modes[k])] for k in interior], dtype=np.uint8)
        ),
        nodes_splits=numpy_helper.from_array(walk.value[interior].astype(np.float32)),
        nodes_truenodeids=[j for _, j in nodes_true],
        nodes_trueleafs=[leaf for leaf, _ in nodes_true],
        nodes_falsenodeids=[j for _, j in nodes_false],
        nodes_falseleafs=[leaf for leaf, _ in nodes_false],
        nodes_missing_value_tracks_true=[int(walk.missing_true[k]) for k in interior],
        leaf_targetids=[leaf_of[k][0] for k in leaves],
        leaf_weights=numpy_helper.from_array(np.array([leaf_of[k][1] for k in leaves], dtype=np.float32)),
    )
    label_out, prob_out = node.output[0], node.output[1]
    graph = model.graph
    rest = [n for n in graph.node if n is not node and n.output[0] != label_out]
    kept: list[onnx.NodeProto] = []
    for n in graph.node:
        if n is node:
            kept += [
                v5,
                helper.make_node("Softmax" if post_name == "SOFTMAX" else "Identity", ["v5_scores"], [prob_out]),
                helper.make_node("ArgMax", ["v5_scores"], [label_out], axis=1, keepdims=0),
            ]
        elif n in rest:
            kept.append(n)
    del graph.node[:]
    graph.node.extend(kept)
    opsets = {o.domain: o.version for o in model.opset_import}
    opsets["ai.onnx.ml"] = 5
    opsets[""] = max(opsets.get("", 15), 21)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets.items())
    model.ir_version = 10
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


# ---------------------------------------------------------------------------- timing
def _p50_p99(fn: Callable[[], Any], runs: int, warmup: int = 1000) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    samples = [0] * runs
    for i in range(runs):
        t0 = clock()
        fn()
        samples[i] = clock() - t0
    samples.sort()
    return {"p50_us": round(samples[runs // 2] / 1e3, 2), "p99_us": round(samples[int(runs * 0.99)] / 1e3, 2)}


def _best_s(fn: Callable[[], Any], rounds: int) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _columns(manifest: Any, n: int, seed: int) -> dict[str, np.ndarray]:
    """Varied rows: numbers across the training range with 5 % NaN, categories with '' and unseen."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for spec in manifest.inputs:
        if spec.type == "number":
            low = 0.0 if spec.min is None else float(spec.min)
            high = 1.0 if spec.max is None else float(spec.max)
            values = rng.uniform(low, high, n)
            if not spec.required:
                values[rng.random(n) < 0.05] = np.nan
            columns[spec.name] = values
        else:
            pool = np.array([*(spec.categories or ["x"]), "", "never seen"])
            columns[spec.name] = pool[rng.integers(0, len(pool), n)]
    return columns


def measure(artifact: Path, public_key: Path | None, *, runs: int, rows: int, rounds: int) -> dict[str, Any]:
    """Every number of the module docstring for one artifact."""
    import onnxruntime as ort

    from edge_runtime import Classifier
    from edge_runtime.artifact import MODEL_FILE
    from edge_runtime.encoding import encode_records
    from edge_runtime.session import make_session

    clf = Classifier.load(artifact, public_key, contract="lenient")  # golden rows may hold gaps
    manifest = clf.manifest
    columns = _columns(manifest, rows, seed=0)
    records = [dict(g.record) for g in manifest.golden_samples]
    raw_bytes = (Path(artifact) / MODEL_FILE).read_bytes()
    out: dict[str, Any] = {"artifact": str(artifact), "graph": clf.graph, "rows": rows, "cpu_count": os.cpu_count()}
    layout = manifest.input_layout
    width = len(layout.num) + len(layout.cat)

    raw_feeds, _ = clf.encode(columns)
    out["ensemble"] = node_visits(raw_bytes, raw_feeds)

    single: dict[str, Any] = {}
    overhead = make_session(minimal_graph(width))
    x1 = np.zeros((1, width), dtype=np.float32)
    run_overhead = overhead._sess.run  # the C-level run Classifier calls
    single["overhead_identity_graph"] = _p50_p99(lambda: run_overhead(["y"], {"x": x1}, None), runs)
    y1 = np.zeros((1, width), dtype=np.float32)
    overhead_binding = overhead.io_binding()
    overhead_binding.bind_input("x", "cpu", 0, np.float32, [1, width], x1.ctypes.data)
    overhead_binding.bind_output("y", "cpu", 0, np.float32, [1, width], y1.ctypes.data)
    run_overhead_bound, overhead_bound = overhead._sess.run_with_iobinding, overhead_binding._iobinding
    single["overhead_identity_graph_iobinding"] = _p50_p99(lambda: run_overhead_bound(overhead_bound, None), runs)
    raw = make_session(raw_bytes)
    raw_one = [encode_records(layout, [r]) for r in records]
    run_raw = raw._sess.run
    single["raw_graph_run_preencoded"] = _p50_p99(lambda: run_raw(["label", "probabilities"], raw_one[0], None), runs)
    single["classifier_classify"] = _p50_p99(lambda: clf.classify(records[0]), runs)

    batch: dict[str, Any] = {}
    float_bytes: bytes | None = None
    if manifest.float_graph is not None and (Path(artifact) / "model_float.onnx").is_file():
        float_bytes = (Path(artifact) / "model_float.onnx").read_bytes()
    if float_bytes is not None:
        features, _ = clf.encode(columns, codes=True)
        matrix = features["features"]
        fast = make_session(float_bytes)
        row = np.ascontiguousarray(matrix[:1])
        outputs = ["label_index", "probabilities"]
        run_fast = fast._sess.run
        single["float_graph_run"] = _p50_p99(lambda: run_fast(outputs, {"features": row}, None), runs)
        # IOBinding: input and both outputs bound once to our own buffers; each call only runs
        binding = fast.io_binding()
        binding.bind_cpu_input("features", row)
        label_buf = np.zeros(1, dtype=np.int64)
        prob_buf = np.zeros((1, len(manifest.classes)), dtype=np.float32)
        binding.bind_output("label_index", "cpu", 0, np.int64, list(label_buf.shape), label_buf.ctypes.data)
        binding.bind_output("probabilities", "cpu", 0, np.float32, list(prob_buf.shape), prob_buf.ctypes.data)
        run_bound, bound = fast._sess.run_with_iobinding, binding._iobinding

        def iobinding_call() -> Any:
            run_bound(bound, None)
            return prob_buf.tolist()

        single["float_graph_iobinding"] = _p50_p99(iobinding_call, runs)
        value = ort.OrtValue.ortvalue_from_numpy(row)
        feeds_ov = {"features": value._ortvalue}
        run_ov = fast._sess.run_with_ort_values

        def ort_values_call() -> Any:
            return run_ov(feeds_ov, outputs, None)[1].numpy().tolist()

        single["float_graph_run_with_ort_values"] = _p50_p99(ort_values_call, runs)

        # per-visit cost: one thread, whole batch, so the per-call overhead vanishes
        one_thread = make_session(float_bytes, threads=1)
        t_one = _best_s(lambda: one_thread.run(outputs, {"features": matrix}), rounds)
        visits = out["ensemble"]["visits_per_row_mean"]
        out["floor"] = {
            "ns_per_visit": t_one * 1e9 / (rows * visits) if visits else None,
            "ns_per_row_batch_1_thread": t_one * 1e9 / rows,
            "overhead_us": min(
                single["overhead_identity_graph"]["p50_us"], single["overhead_identity_graph_iobinding"]["p50_us"]
            ),
        }
        tree_us = visits * out["floor"]["ns_per_visit"] / 1e3 if visits else 0.0
        out["floor"]["tree_work_us_per_row"] = tree_us
        out["floor"]["single_record_floor_us"] = out["floor"]["overhead_us"] + tree_us

        for threads in sorted({1, os.cpu_count() or 1}):
            for spinning in (False, True):
                session = make_session(float_bytes, threads=threads, spinning=spinning)
                seconds = _best_s(partial(session.run, outputs, {"features": matrix}), rounds)
                batch[f"float_graph_threads{threads}_{'spin' if spinning else 'nospin'}_rows_per_s"] = rows / seconds
        converted = tree_ensemble_v5(float_bytes)
        if isinstance(converted, bytes):
            v5 = make_session(converted)
            got = v5.run(outputs, {"features": matrix[:2000]})
            want = fast.run(outputs, {"features": matrix[:2000]})
            run_v5 = v5._sess.run
            single["float_graph_tree_ensemble_v5"] = _p50_p99(lambda: run_v5(outputs, {"features": row}, None), runs)
            v5_one = make_session(converted, threads=1)
            t_v5 = _best_s(lambda: v5_one.run(outputs, {"features": matrix}), rounds)
            out["tree_ensemble_v5"] = {
                "max_abs_prob_diff": float(np.abs(got[1] - want[1]).max()),
                "label_agreement": float(np.mean(got[0] == want[0])),
                "batch_1_thread_rows_per_s": rows / t_v5,
                "batch_1_thread_rows_per_s_classifier_op": rows / t_one,
            }
        else:
            out["tree_ensemble_v5"] = {"not_applicable": converted}
    raw_batch = make_session(raw_bytes, threads=os.cpu_count() or 1)
    batch["raw_graph_all_threads_rows_per_s"] = rows / _best_s(lambda: raw_batch.run(None, raw_feeds), rounds)
    batch["classify_many_numpy_columns_rows_per_s"] = rows / _best_s(lambda: clf.classify_many(columns), rounds)
    batch["classify_many_encode_only_rows_per_s"] = rows / _best_s(lambda: clf.encode(columns, codes=True), rounds)
    out["single_record"] = single
    out["batch"] = {k: round(v) for k, v in batch.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--public-key", type=Path, help="default: EDGESEG_KEY_DIR rule")
    parser.add_argument("--runs", type=int, default=20_000, help="timed single calls per path")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the batch measurements")
    parser.add_argument("--rounds", type=int, default=5, help="batch rounds (best is kept)")
    parser.add_argument("--smoke", action="store_true", help="seconds: 500 calls, 5k rows, 2 rounds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.rows, args.rounds = 500, 5_000, 2
    result = measure(args.artifact, args.public_key, runs=args.runs, rows=args.rows, rounds=args.rounds)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
