"""Write small ONNX graphs without the ``onnx`` package (it is not installed on a device).

``edge-runtime calibrate`` needs a reference set of graphs built in code, identical on every
device and on the build machine, so their latencies can be compared. The ``onnx`` package (and
its protobuf dependency) is a factory-only requirement, so this module writes the protobuf wire
format by hand. It covers only what the reference graphs use: tensors, value infos, nodes with
int/float/string/list attributes, and opset imports (field numbers from ``onnx/onnx.proto``).
A test parses the output with ``onnx.checker`` to prove the bytes are a valid model.

The graphs have the shape the factory exports (docs/ARTIFACT.md): a float ``num`` input
``[N, n_num]``, an optional string ``cat`` input ``[N, n_cat]`` mapped by one ``LabelEncoder``
per column, and a ``TreeEnsembleClassifier`` with ``label`` and ``probabilities`` outputs.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable, Sequence

__all__ = ["tree_ensemble_model"]

# onnx.TensorProto.DataType
_FLOAT = 1
_INT64 = 7
_STRING = 8
# onnx.AttributeProto.AttributeType
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING = 1, 2, 3
_ATTR_FLOATS, _ATTR_INTS, _ATTR_STRINGS = 6, 7, 8

_IR_VERSION = 8  # what onnx 1.10+ writes for opset 15
_OPSET = 15
_ML_OPSET = 3


def _varint(value: int) -> bytes:
    if value < 0:  # int64 fields encode negatives as 10-byte two's complement
        value += 1 << 64
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _int(field: int, value: int) -> bytes:
    return _key(field, 0) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return _key(field, 2) + _varint(len(data)) + data


def _float(field: int, value: float) -> bytes:
    return _key(field, 5) + struct.pack("<f", value)


def _packed_ints(field: int, values: Iterable[int]) -> bytes:
    return _bytes(field, b"".join(_varint(v) for v in values))


def _packed_floats(field: int, values: Sequence[float]) -> bytes:
    return _bytes(field, struct.pack(f"<{len(values)}f", *values))


def _attribute(name: str, value: object) -> bytes:
    """AttributeProto: name=1, f=2, i=3, s=4, floats=7, ints=8, strings=9, type=20."""
    out = _bytes(1, name)
    if isinstance(value, float):
        return out + _float(2, value) + _int(20, _ATTR_FLOAT)
    if isinstance(value, int):
        return out + _int(3, value) + _int(20, _ATTR_INT)
    if isinstance(value, str):
        return out + _bytes(4, value) + _int(20, _ATTR_STRING)
    items = list(value)  # type: ignore[call-overload]
    if items and isinstance(items[0], str):
        return out + b"".join(_bytes(9, s) for s in items) + _int(20, _ATTR_STRINGS)
    if items and isinstance(items[0], float):
        return out + _packed_floats(7, items) + _int(20, _ATTR_FLOATS)
    return out + _packed_ints(8, items) + _int(20, _ATTR_INTS)


def _node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], domain: str = "", **attrs: object) -> bytes:
    """NodeProto: input=1, output=2, name=3, op_type=4, attribute=5, domain=7."""
    out = b"".join(_bytes(1, name) for name in inputs)
    out += b"".join(_bytes(2, name) for name in outputs)
    out += _bytes(3, f"{op_type}_{outputs[0]}") + _bytes(4, op_type)
    out += b"".join(_bytes(5, _attribute(k, v)) for k, v in sorted(attrs.items()))
    if domain:
        out += _bytes(7, domain)
    return out


def _value_info(name: str, elem_type: int, dims: Sequence[int | str]) -> bytes:
    """ValueInfoProto(name=1, type=2) -> TypeProto.tensor_type=1 -> (elem_type=1, shape=2)."""
    shape = b""
    for dim in dims:  # Dimension: dim_value=1, dim_param=2
        shape += _bytes(1, _bytes(2, dim) if isinstance(dim, str) else _int(1, dim))
    tensor_type = _int(1, elem_type) + _bytes(2, shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def _model(nodes: Sequence[bytes], inputs: Sequence[bytes], outputs: Sequence[bytes]) -> bytes:
    """ModelProto: ir_version=1, producer_name=2, graph=7, opset_import=8."""
    graph = b"".join(_bytes(1, n) for n in nodes) + _bytes(2, "edgeseg_reference")
    graph += b"".join(_bytes(11, v) for v in inputs) + b"".join(_bytes(12, v) for v in outputs)
    opsets = _bytes(8, _bytes(1, "") + _int(2, _OPSET))
    opsets += _bytes(8, _bytes(1, "ai.onnx.ml") + _int(2, _ML_OPSET))
    return _int(1, _IR_VERSION) + _bytes(2, "edgeseg.edge_runtime") + _bytes(7, graph) + opsets


def _random_trees(
    rng: random.Random, *, n_trees: int, depth: int, n_features: int, n_classes: int
) -> dict[str, object]:
    """Full binary trees of the given depth with random splits, as TreeEnsembleClassifier attrs."""
    attrs: dict[str, list[object]] = {
        key: []
        for key in (
            "nodes_treeids nodes_nodeids nodes_featureids nodes_values nodes_modes "
            "nodes_truenodeids nodes_falsenodeids nodes_missing_value_tracks_true "
            "class_treeids class_nodeids class_ids class_weights"
        ).split()
    }
    n_nodes = 2 ** (depth + 1) - 1
    first_leaf = 2**depth - 1
    for tree in range(n_trees):
        for node in range(n_nodes):
            leaf = node >= first_leaf
            attrs["nodes_treeids"].append(tree)
            attrs["nodes_nodeids"].append(node)
            attrs["nodes_featureids"].append(0 if leaf else rng.randrange(n_features))
            attrs["nodes_values"].append(0.0 if leaf else round(rng.uniform(-1.0, 4.0), 3))
            attrs["nodes_modes"].append("LEAF" if leaf else "BRANCH_LEQ")
            attrs["nodes_truenodeids"].append(0 if leaf else 2 * node + 1)
            attrs["nodes_falsenodeids"].append(0 if leaf else 2 * node + 2)
            attrs["nodes_missing_value_tracks_true"].append(0 if leaf else rng.randrange(2))
            if leaf:
                for cls in range(n_classes):
                    attrs["class_treeids"].append(tree)
                    attrs["class_nodeids"].append(node)
                    attrs["class_ids"].append(cls)
                    attrs["class_weights"].append(round(rng.uniform(-1.0, 1.0), 4))
    return dict(attrs)


def tree_ensemble_model(
    *,
    n_num: int,
    categories: Sequence[Sequence[str]],
    classes: Sequence[str],
    n_trees: int,
    depth: int,
    seed: int,
) -> bytes:
    """Serialized ONNX model: ``num`` (+ ``cat``) inputs -> ``label``, ``probabilities``.

    ``categories[j]`` are the known values of string column j; they are label-encoded to
    0..k-1 (unknown -> -1, like the factory's graphs). Trees split on every feature.
    """
    if n_num < 1:
        raise ValueError(f"n_num must be >= 1. Got {n_num} instead.")
    rng = random.Random(seed)
    n_cat = len(categories)
    nodes: list[bytes] = []
    inputs = [_value_info("num", _FLOAT, ["N", n_num])]
    features = "num"
    if n_cat:
        inputs.append(_value_info("cat", _STRING, ["N", n_cat]))
        split_outputs = [f"cat_{j}" for j in range(n_cat)]
        if n_cat == 1:
            nodes.append(_node("Identity", ["cat"], split_outputs))
        else:
            nodes.append(_node("Split", ["cat"], split_outputs, axis=1))
        encoded = []
        for j, known in enumerate(categories):
            nodes.append(
                _node(
                    "LabelEncoder",
                    [f"cat_{j}"],
                    [f"cat_{j}_code"],
                    domain="ai.onnx.ml",
                    keys_strings=list(known),
                    values_floats=[float(i) for i in range(len(known))],
                    default_float=-1.0,
                )
            )
            encoded.append(f"cat_{j}_code")
        nodes.append(_node("Concat", ["num", *encoded], ["features"], axis=1))
        features = "features"
    trees = _random_trees(rng, n_trees=n_trees, depth=depth, n_features=n_num + n_cat, n_classes=len(classes))
    nodes.append(
        _node(
            "TreeEnsembleClassifier",
            [features],
            ["label", "probabilities"],
            domain="ai.onnx.ml",
            classlabels_strings=list(classes),
            post_transform="SOFTMAX",
            **trees,
        )
    )
    outputs = [
        _value_info("label", _STRING, ["N"]),
        _value_info("probabilities", _FLOAT, ["N", len(classes)]),
    ]
    return _model(nodes, inputs, outputs)
