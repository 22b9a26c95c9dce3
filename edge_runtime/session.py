"""The one place onnxruntime sessions are made (edge, factory latency/parity, benchmarks).

One set of options everywhere means the latency the factory measures, the parity it checks and
the benchmarks' numbers are all for the session a till actually runs: sequential execution,
all graph optimisations, one inter-op thread, CPU provider, warnings only, and no spinning by
default. Why no spinning: on a till that runs other software (and on a shared build box)
spinning workers that lose their core made batches 2-3x slower than one thread; without
spinning they degrade gracefully.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

__all__ = ["make_session"]

_ERRORS_ONLY = 3  # onnxruntime log severity: 0 verbose .. 3 error


def make_session(model: bytes | str | Path, *, threads: int = 1, spinning: bool = False) -> ort.InferenceSession:
    """An InferenceSession over ``model`` (ONNX bytes or a path to a ``.onnx`` file).

    ``threads``: intra-op threads (1 for the single-record path, more for big batches).
    ``spinning``: let idle intra-op workers spin (only ever worth it on a dedicated core).
    onnxruntime's own errors (an invalid graph, a missing file) propagate unchanged; callers
    that load untrusted artifacts wrap them (``Classifier`` raises ``ModelLoadError``).
    """
    if threads < 1:
        raise ValueError(f"The 'threads' parameter of make_session must be >= 1. Got {threads!r} instead.")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = _ERRORS_ONLY
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
