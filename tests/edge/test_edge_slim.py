"""edge_runtime works with only numpy, onnxruntime, cryptography and the standard library."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCKED = ["pandas", "sklearn", "flaml", "lightgbm", "xgboost", "fastapi", "skl2onnx", "onnx",
           "onnxmltools", "scipy", "pyarrow", "shap", "matplotlib", "sqlalchemy", "pydantic",
           "httpx", "factory", "central"]  # fmt: skip
# What may be imported from outside the standard library (onnxruntime's own imports included).
ALLOWED = {"edge_runtime", "numpy", "onnxruntime", "cryptography", "cffi", "_cffi_backend"}

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys
    before = set(sys.modules)  # start-up hooks of the virtualenv (.pth files) are not ours
    blocked = set(json.loads(sys.argv[1]))

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ImportError(f"{name} is blocked in the slim edge test")
            return None

    sys.meta_path.insert(0, Blocker())
    import tempfile
    import edge_runtime
    from edge_runtime import Classifier, Runtime
    from edge_runtime.cli import main

    artifact, key = sys.argv[2], sys.argv[3]
    clf = Classifier.load(artifact, key)
    record = dict(clf.manifest.golden_samples[0].record)
    segment = clf.classify(record).segment
    batch = clf.classify_many([record] * 300)
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(clf, outbox_path=tmp + "/o.db", device_id="d", secret="x" * 32)
        seq = rt.classify(record).seq
        rt.close()
    third_party = sorted({
        name.split(".")[0] for name, module in list(sys.modules.items())
        if name not in before and getattr(module, "__file__", None)
        and ("site-packages" in module.__file__ or "edge_runtime" in module.__file__)
    })
    print(json.dumps({"segment": segment, "batch": len(batch), "seq": seq,
                      "third_party": third_party}))
    """
)


def run_slim(artifact: Path, key: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(BLOCKED), str(artifact), str(key)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_edge_runtime_needs_only_numpy_onnxruntime_cryptography(toy_artifact, toy_public_key):
    out = run_slim(toy_artifact, toy_public_key)
    assert out["segment"] in {"A", "B", "C", "D"}
    assert (out["batch"], out["seq"]) == (300, 1)
    assert set(out["third_party"]) <= ALLOWED, out["third_party"]
    assert {"edge_runtime", "numpy", "onnxruntime", "cryptography"} <= set(out["third_party"])


def test_slim_on_the_factory_artifact(small_artifact, signing_public_key):
    out = run_slim(small_artifact, signing_public_key)
    assert set(out["third_party"]) <= ALLOWED, out["third_party"]
    assert out["seq"] == 1
