"""Derive the float-only graph (``model_float.onnx``) from the exported raw-column graph.

Why a second graph: in onnxruntime the string path (a string tensor, a ``Split`` and one
``LabelEncoder`` per string column, then a string ``label`` output) costs more than the trees
of a small model. Measured on the default retail model (random forest, 11 numbers + 2
strings, 1 thread, the same rows): raw graph ``session.run`` p50 5.4 µs, this graph 3.3 µs,
an empty (Identity) graph 2.4 µs; in batch the per-column encoders halved throughput. A device
that encodes strings itself from the signed vocabulary (a dict lookup per field) and runs
this graph keeps the same answers for less (edge_runtime/README.md, "Speed").

Why derive it here, at export, and ship it as a second signed file (instead of rewriting the
graph on the device at load): the device has no ``onnx`` package, and a hand-written protobuf
rewriter there would run graph surgery on every till, unchecked by the factory. Here the
derived bytes go through the same parity gate as the raw graph (native pipeline, held-out rows
plus rows with missing values and unseen categories), their sha256 is signed in the manifest,
and the device only hashes and loads them. ``model.onnx`` stays the portable contract for
other runtimes; an artifact without ``float_graph`` (older, or a graph this module cannot
derive) runs the raw graph as before.

The derivation, on the graph ``factory._onnx_export.export_graph`` writes:

* the ``cat`` input, its ``Split``/``Identity`` and the per-column string ``LabelEncoder``
  nodes are cut; their keys (in code order) become ``FloatGraph.codes``, which the device
  uses with the encoder's own rule (unknown -> -1, missing -> the missing token's code);
* one float input ``features`` ``[N, n_num + n_cat]`` replaces ``num`` and the codes: when the
  numbers go through a single median ``Imputer`` straight into the ``Concat``, that imputer
  takes the whole row (its values padded for the code columns, which are never NaN) and the
  ``Concat`` disappears (3.3 vs 4.0 µs for ``num`` + ``codes`` inputs and a ``Concat``);
  any other number preprocessing (the KNN imputer) gets ``Slice`` nodes instead;
* the tail ``LabelEncoder`` (class index -> class name) becomes the int64 output
  ``label_index``: the device maps it to ``manifest.target.classes`` (one fewer string tensor).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import TensorProto, helper, numpy_helper

from edge_runtime.artifact import Parity
from edge_runtime.encoding import CategoryCodes, float_features
from factory._parity import StressRows, check_parity, encode_frame
from factory._schema import InputSchema
from factory.errors import ParityError

__all__ = ["FloatGraphExport", "derive_float_graph", "float_predict", "gate_float_graph"]

logger = logging.getLogger("factory")

FEATURES = "features"
LABEL_INDEX = "label_index"


class FloatGraphExport(NamedTuple):
    """The derived graph's bytes, the vocabularies it expects, and its parity result."""

    model_bytes: bytes
    codes: tuple[tuple[str, ...], ...]
    parity: Parity | None = None

    def manifest_section(self) -> dict[str, Any]:
        """``manifest.float_graph`` (the sha256 is of exactly these bytes)."""
        import hashlib

        if self.parity is None:
            raise ValueError("the float graph has not been through the parity gate")
        return {
            "sha256": hashlib.sha256(self.model_bytes).hexdigest(),
            "onnx_bytes": len(self.model_bytes),
            "codes": [list(c) for c in self.codes],
            "parity": self.parity.to_json(),
        }


class CannotDerive(ValueError):
    """The raw graph is not of the shape this module knows how to cut (no float graph then)."""


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _vocabulary(node: onnx.NodeProto) -> tuple[str, ...]:
    """The keys of a string -> float LabelEncoder in code order (codes must be 0..k-1, default -1)."""
    attrs = _attrs(node)
    keys = [k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in attrs.get("keys_strings", [])]
    values = [float(v) for v in attrs.get("values_floats", [])]
    if len(keys) != len(values) or sorted(values) != [float(i) for i in range(len(values))]:
        raise CannotDerive(f"LabelEncoder {node.name or node.output[0]!r} does not map its keys to 0..k-1")
    if float(attrs.get("default_float", -1.0)) != -1.0:
        raise CannotDerive(f"LabelEncoder {node.name or node.output[0]!r} has a default other than -1")
    ordered = [key for _, key in sorted(zip(values, keys, strict=True))]
    return tuple(ordered)


def _topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` in an order where every input is produced before it is read (ONNX requires it)."""
    done: list[onnx.NodeProto] = []
    pending = list(nodes)
    while pending:
        ready = [n for n in pending if all(not name or name in available for name in n.input)]
        if not ready:
            raise CannotDerive(f"the cut graph has unproduced inputs: {sorted(set(pending[0].input) - available)}")
        for node in ready:
            available.update(node.output)
        done += ready
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    return done


def derive_float_graph(raw: onnx.ModelProto | bytes, n_num: int, n_cat: int) -> FloatGraphExport:
    """Cut the string path out of ``raw`` (see the module docstring); CannotDerive otherwise."""
    model = onnx.ModelProto()
    if isinstance(raw, bytes):
        model.ParseFromString(raw)
    else:
        model.CopyFrom(raw)
    graph = model.graph
    nodes = list(graph.node)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    dropped: set[int] = set()

    # 1. the string path: cat -> Split/Identity -> one LabelEncoder per column -> codes
    code_outputs: list[str] = []
    codes: list[tuple[str, ...]] = []
    if n_cat:
        splitters = consumers.get("cat", [])
        if len(splitters) != 1 or splitters[0].op_type not in ("Split", "Identity"):
            raise CannotDerive("the 'cat' input does not feed exactly one Split/Identity node")
        dropped.add(id(splitters[0]))
        for column in splitters[0].output:
            encoders = consumers.get(column, [])
            if len(encoders) != 1 or encoders[0].op_type != "LabelEncoder":
                raise CannotDerive(f"string column {column!r} does not feed exactly one LabelEncoder")
            codes.append(_vocabulary(encoders[0]))
            code_outputs.append(encoders[0].output[0])
            dropped.add(id(encoders[0]))
        if len(codes) != n_cat:
            raise CannotDerive(f"the graph splits 'cat' into {len(codes)} columns, the layout has {n_cat}")

    # 2. where numbers and codes meet: the Concat that builds the model's feature matrix
    concat = None
    if code_outputs:
        users = consumers.get(code_outputs[0], [])
        concat = users[0] if len(users) == 1 and users[0].op_type == "Concat" else None
        if concat is None or list(concat.input)[-n_cat:] != code_outputs or len(concat.input) > n_cat + 1:
            raise CannotDerive("the string codes do not end one Concat of [numbers, codes...]")
    new_nodes: list[onnx.NodeProto] = []
    initializers = [init for init in graph.initializer if init.name != "cat_split"]
    if concat is not None:
        dropped.add(id(concat))
        target = concat.output[0]
        number_part = list(concat.input)[0] if n_num else None
        imputers = consumers.get("num", []) if n_num else []
        fusable = (
            len(imputers) == 1
            and imputers[0].op_type == "Imputer"
            and imputers[0].output[0] == number_part
            and len(consumers.get(number_part or "", [])) == 1
        )
        if not n_num:
            new_nodes.append(helper.make_node("Identity", [FEATURES], [target]))
        elif fusable:
            imputer = imputers[0]
            attrs = _attrs(imputer)
            values = [float(v) for v in attrs.get("imputed_value_floats", [])]
            if len(values) == 1:
                values = values * n_num
            dropped.add(id(imputer))
            new_nodes.append(
                helper.make_node(
                    "Imputer",
                    [FEATURES],
                    [target],
                    domain="ai.onnx.ml",
                    imputed_value_floats=values + [0.0] * n_cat,  # codes are never NaN
                    replaced_value_float=float("nan"),
                )
            )
        else:
            initializers += [
                numpy_helper.from_array(np.array([0], dtype=np.int64), "float_starts_num"),
                numpy_helper.from_array(np.array([n_num], dtype=np.int64), "float_split_at"),
                numpy_helper.from_array(np.array([n_num + n_cat], dtype=np.int64), "float_end"),
                numpy_helper.from_array(np.array([1], dtype=np.int64), "float_axis"),
            ]
            new_nodes += [
                helper.make_node("Slice", [FEATURES, "float_starts_num", "float_split_at", "float_axis"], ["num"]),
                helper.make_node("Slice", [FEATURES, "float_split_at", "float_end", "float_axis"], ["float_codes"]),
                helper.make_node("Concat", [str(number_part), "float_codes"], [target], axis=1),
            ]
    # numbers only: ``num`` itself is renamed to ``features`` below

    # 3. the tail: class index -> class name becomes the int64 output label_index
    label_nodes = [n for n in nodes if "label" in n.output and n.op_type == "LabelEncoder"]
    if len(label_nodes) != 1:
        raise CannotDerive("no LabelEncoder produces the 'label' output")
    dropped.add(id(label_nodes[0]))
    new_nodes.append(helper.make_node("Identity", [label_nodes[0].input[0]], [LABEL_INDEX]))

    kept = [n for n in nodes if id(n) not in dropped]
    if not n_cat:  # numbers only: same graph, its input renamed
        for node in kept:
            node.input[:] = [FEATURES if name == "num" else name for name in node.input]
    available = {FEATURES, *(init.name for init in initializers)}
    del graph.node[:]
    graph.node.extend(_topological(new_nodes + kept, available))
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, [None, n_num + n_cat]))
    probabilities = [o for o in graph.output if o.name == "probabilities"]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(LABEL_INDEX, TensorProto.INT64, [None]))
    graph.output.extend(probabilities)
    graph.name = "edgeseg-float"
    onnx.checker.check_model(model)
    return FloatGraphExport(model.SerializeToString(), tuple(codes))


def float_predict(
    session: ort.InferenceSession,
    frame: pd.DataFrame,
    schema: InputSchema,
    codes: Sequence[Sequence[str]],
    classes: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of the float graph, fed as the device feeds it."""
    features = float_features(encode_frame(frame, schema), CategoryCodes(codes))
    index, proba = session.run([LABEL_INDEX, "probabilities"], {FEATURES: features})
    return np.asarray(classes, dtype=object)[np.asarray(index)], np.asarray(proba)


def gate_float_graph(
    raw_graph: onnx.ModelProto,
    native_proba: Any,
    held_out: pd.DataFrame,
    schema: InputSchema,
    classes: list[str],
    stressed: StressRows,
) -> FloatGraphExport | str:
    """The float graph with its parity result, or why there is none (the raw graph serves then)."""
    from edge_runtime.session import make_session

    try:
        derived = derive_float_graph(raw_graph, len(schema.num), len(schema.cat))
    except CannotDerive as exc:
        logger.warning("no float-only graph (the device runs model.onnx): %s", exc)
        return f"float graph not derived: {exc}"
    session = make_session(derived.model_bytes)

    def predict(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return float_predict(session, frame, schema, derived.codes, classes)

    try:
        parity = check_parity(session, native_proba, held_out, schema, classes, stressed=stressed, predict=predict)
    except ParityError as exc:
        logger.warning("float-only graph refused by the parity gate (the device runs model.onnx): %s", exc)
        return f"float graph refused by the parity gate: {exc}"
    return derived._replace(parity=parity)


def device_timing(
    raw: onnx.ModelProto | bytes, feeds: dict[str, np.ndarray], n_num: int, n_cat: int
) -> tuple[bytes, dict[str, np.ndarray]]:
    """What a latency budget times: the graph the device will run, and the rows as it feeds them.

    The float graph (and ``feeds`` coded from its vocabulary) when it can be derived, else
    the raw graph and ``feeds`` as given. Budgets are about the device (docs/DESIGN.md §2), and a
    device runs the float graph whenever the artifact has one; timing the raw graph instead
    refused models a till would have run within budget (wide string tables most).
    """
    try:
        derived = derive_float_graph(raw, n_num, n_cat)
    except CannotDerive:
        return (raw if isinstance(raw, bytes) else raw.SerializeToString()), feeds
    return derived.model_bytes, {FEATURES: float_features(feeds, CategoryCodes(derived.codes))}
