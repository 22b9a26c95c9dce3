"""Measure this device's single-row latency on fixed reference graphs; write a device profile.

How the numbers relate (kept simple on purpose):

* The reference set is three tree-ensemble graphs of the factory's layout (``num`` floats +
  ``cat`` strings through ``LabelEncoder`` -> ``TreeEnsembleClassifier``), generated in code
  from fixed seeds by ``_onnx_proto`` -- byte-identical on every machine, no files to ship.
* On each graph we time one pre-built row through a one-thread, no-spinning session (exactly
  how ``Classifier`` runs single records) and keep p50 and p99 in microseconds. The profile
  records these absolute numbers.
* ``scale = geometric mean over graphs of (this device's p50 / reference p50)``. The
  reference is the *build machine's* own calibrate run: pass its profile with ``--reference``.
  Without one, the built-in :data:`BUILD_MACHINE_P50_US` is used: numbers measured by running
  this same command on the edgeseg development/build VM (2 vCPU x86_64, onnxruntime 1.23.2).
  If you build models elsewhere, run ``edge-runtime calibrate`` there and pass that file.
* The factory multiplies the latency it measures by ``scale`` (``--device-profile``), so a
  terminal twice as slow as the build machine gets models budgeted at half the latency.
"""

from __future__ import annotations

import math
import os
import platform
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_runtime._onnx_proto import tree_ensemble_model
from edge_runtime.session import make_session

__all__ = ["BUILD_MACHINE_P50_US", "REFERENCE_GRAPHS", "calibrate", "measure_graph"]

PROFILE_FORMAT_VERSION = 1

# name -> tree_ensemble_model keyword arguments (fixed seeds: the same bytes everywhere).
REFERENCE_GRAPHS: dict[str, dict[str, Any]] = {
    "trees_20x4_num8": {"n_num": 8, "categories": [], "n_trees": 20, "depth": 4, "seed": 11},
    "trees_100x6_num4_cat4": {
        "n_num": 4,
        "categories": [[f"{c}{i}" for i in range(k)] for c, k in zip("abcd", (2, 5, 9, 7), strict=True)],
        "n_trees": 100,
        "depth": 6,
        "seed": 12,
    },
    "trees_300x5_num6_cat2": {
        "n_num": 6,
        "categories": [[f"{c}{i}" for i in range(k)] for c, k in zip("ab", (3, 12), strict=True)],
        "n_trees": 300,
        "depth": 5,
        "seed": 13,
    },
}
_CLASSES = ["A", "B", "C", "D"]

# p50 µs of the reference graphs on the build machine (see the module docstring): the median
# of `edge-runtime calibrate --runs 4000` runs on the 2-vCPU development VM, 2026-11-27.
BUILD_MACHINE_P50_US: dict[str, float] = {
    "trees_20x4_num8": 5.0,
    "trees_100x6_num4_cat4": 11.4,
    "trees_300x5_num6_cat2": 15.8,
}


def measure_graph(spec: Mapping[str, Any], *, runs: int = 2000, warmup: int = 200) -> dict[str, Any]:
    """Single-row latency of one reference graph: p50/p99 µs and the session build time."""
    model = tree_ensemble_model(classes=_CLASSES, **spec)
    started = time.perf_counter()
    session = make_session(model)  # the single-record session a till runs
    load_ms = (time.perf_counter() - started) * 1e3
    feeds: dict[str, np.ndarray] = {"num": np.linspace(-0.5, 3.5, spec["n_num"], dtype=np.float32).reshape(1, -1)}
    if spec["categories"]:
        feeds["cat"] = np.array([[known[1] for known in spec["categories"]]], dtype=object)
    run = session.run
    for _ in range(warmup):
        run(None, feeds)
    samples = np.empty(runs)
    clock = time.perf_counter_ns
    for i in range(runs):
        t0 = clock()
        run(None, feeds)
        samples[i] = clock() - t0
    samples /= 1e3
    return {
        "p50_us": round(float(np.percentile(samples, 50)), 3),
        "p99_us": round(float(np.percentile(samples, 99)), 3),
        "runs": runs,
        "session_load_ms": round(load_ms, 3),
        "model_bytes": len(model),
    }


def calibrate(
    *,
    runs: int = 2000,
    reference: Mapping[str, Any] | None = None,
    reference_source: str = "built-in build machine numbers",
    device_id: str | None = None,
) -> dict[str, Any]:
    """Measure every reference graph and return the device profile (JSON-ready dict).

    ``reference``: another profile (the build machine's) whose ``measurements`` p50s are the
    denominators of ``scale``; default :data:`BUILD_MACHINE_P50_US`.
    """
    if runs < 10:
        raise ValueError(f"The 'runs' parameter of calibrate must be >= 10. Got {runs!r} instead.")
    if reference is not None:
        try:
            ref_p50 = {k: float(v["p50_us"]) for k, v in reference["measurements"].items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"reference profile has no usable measurements: {exc!r}") from exc
    else:
        ref_p50 = dict(BUILD_MACHINE_P50_US)
    measurements = {name: measure_graph(spec, runs=runs) for name, spec in REFERENCE_GRAPHS.items()}
    ratios = [measurements[name]["p50_us"] / ref_p50[name] for name in REFERENCE_GRAPHS if ref_p50.get(name, 0) > 0]
    if not ratios:
        raise ValueError("reference profile measures none of this runtime's reference graphs")
    scale = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    return {
        "format_version": PROFILE_FORMAT_VERSION,
        "device": {
            "device_id": device_id,
            "hostname": socket.gethostname(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "system": platform.system(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
        },
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scale": round(scale, 4),
        "reference": {"source": reference_source, "p50_us": ref_p50},
        "measurements": measurements,
        "method": "single row, 1 intra-op thread, no spinning; scale = geometric mean of "
        "p50 / reference p50 over the reference graphs",
    }
