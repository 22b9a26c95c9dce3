"""A small signed artifact in the factory's format, built without the factory.

The edge tests need a model before (and besides) the real factory fixture: this writes a random
tree ensemble with the segmentation table's columns (docs/ARTIFACT.md layout), a manifest
whose golden samples are computed by onnxruntime itself, and an Ed25519 signature made with a
key the test owns. ``benchmarks/edge_latency.py --toy`` uses it too.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_runtime._onnx_proto import tree_ensemble_model
from edge_runtime.encoding import InputLayout, encode_records
from edge_runtime.session import make_session
from edge_runtime.signing import key_id

NUM = {"Age": (18.0, 89.0), "Work_Experience": (0.0, 14.0), "Family_Size": (1.0, 9.0)}
CAT = {
    "Gender": ["Female", "Male"],
    "Ever_Married": ["No", "Yes"],
    "Graduated": ["No", "Yes"],
    "Profession": ["Artist", "Doctor", "Engineer", "Healthcare", "Lawyer"],
    "Spending_Score": ["Average", "High", "Low"],
    "Var_1": ["Cat_1", "Cat_2", "Cat_3", "Cat_4", "Cat_6"],
}
CLASSES = ["A", "B", "C", "D"]
MISSING = "__missing__"

GOLDEN_RECORDS: list[dict[str, Any]] = [
    {"Age": 22, "Work_Experience": 1.0, "Family_Size": 4.0, "Gender": "Male",
     "Ever_Married": "No", "Graduated": "No", "Profession": "Healthcare",
     "Spending_Score": "Low", "Var_1": "Cat_4"},
    {"Age": 38, "Work_Experience": None, "Family_Size": 3.0, "Gender": "Female",
     "Ever_Married": "Yes", "Graduated": "Yes", "Profession": "Engineer",
     "Spending_Score": "Average", "Var_1": "Cat_4"},
    {"Age": 67, "Work_Experience": 1.0, "Family_Size": 1.0, "Gender": "Female",
     "Ever_Married": "Yes", "Graduated": "Yes", "Profession": "Lawyer",
     "Spending_Score": "High", "Var_1": "Cat_6"},
    {"Age": 40, "Work_Experience": 0.0, "Family_Size": None, "Gender": "Male",
     "Ever_Married": None, "Graduated": "No", "Profession": None,
     "Spending_Score": "Low", "Var_1": None},
]  # fmt: skip


def generate_key() -> tuple[Ed25519PrivateKey, bytes]:
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pem


def sign(manifest_bytes: bytes, key: Ed25519PrivateKey) -> bytes:
    envelope = {
        "algorithm": "ed25519",
        "key_id": key_id(key.public_key()),
        "signature": base64.b64encode(key.sign(manifest_bytes)).decode("ascii"),
    }
    return json.dumps(envelope, sort_keys=True).encode("utf-8")


def write_manifest(folder: Path, manifest: dict[str, Any], key: Ed25519PrivateKey) -> None:
    data = json.dumps(manifest, sort_keys=True, indent=2).encode("utf-8")
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.sig").write_bytes(sign(data, key))


def build_toy_artifact(
    out_dir: Path,
    key: Ed25519PrivateKey,
    *,
    name: str = "toy-seg",
    version: str = "20261127T000000Z",
    seed: int = 0,
    n_trees: int = 60,
    depth: int = 5,
) -> Path:
    folder = Path(out_dir) / name / version
    folder.mkdir(parents=True, exist_ok=True)
    model = tree_ensemble_model(
        n_num=len(NUM),
        categories=list(CAT.values()),
        classes=CLASSES,
        n_trees=n_trees,
        depth=depth,
        seed=seed,
    )
    (folder / "model.onnx").write_bytes(model)
    layout = InputLayout(num=list(NUM), cat=list(CAT), missing_token=MISSING)
    session = make_session(model)
    labels, probabilities = session.run(None, encode_records(layout, GOLDEN_RECORDS))
    inputs: list[dict[str, Any]] = [
        {"name": n, "type": "number", "required": n == "Age", "min": lo, "max": hi,
         "missing_in_training": 0.05}
        for n, (lo, hi) in NUM.items()
    ] + [
        {"name": n, "type": "string", "required": False, "categories": cats, "max_length": 32,
         "missing_in_training": 0.02}
        for n, cats in CAT.items()
    ]  # fmt: skip
    reference: dict[str, Any] = {}
    for n, (lo, hi) in NUM.items():
        edges = np.linspace(lo, hi, 6).tolist()
        reference[n] = {"type": "number", "bin_edges": edges, "proportions": [0.19] * 5 + [0.05]}
    for n, cats in CAT.items():
        share = 0.96 / len(cats)
        reference[n] = {"type": "string", "categories": cats, "proportions": [share] * len(cats),
                        "other": 0.02, "missing": 0.02}  # fmt: skip
    manifest = {
        "format_version": 1,
        "name": name,
        "version": version,
        "model_version": f"{name}/{version}",
        "created_at": "2026-11-27T00:00:00Z",
        "task": "classification",
        "id_field": "ID",
        "input_layout": {"num": list(NUM), "cat": list(CAT), "missing_token": MISSING},
        "inputs": inputs,
        "target": {"name": "Segmentation", "classes": CLASSES, "profiles": {}, "label_rule": None},
        "reference": reference,
        "golden_samples": [
            {"record": record, "label": str(label), "probabilities": [float(p) for p in probs]}
            for record, label, probs in zip(GOLDEN_RECORDS, labels, probabilities, strict=True)
        ],
        "onnx_sha256": hashlib.sha256(model).hexdigest(),
        "onnx_bytes": len(model),
        "signing": {"key_id": key_id(key.public_key())},
    }
    write_manifest(folder, manifest, key)
    return folder
