"""edgeseg's edge runtime: verified, validated, microsecond customer segmentation on a device.

Imports numpy, onnxruntime, cryptography and the standard library only (a test blocks the
rest). ``Classifier`` is inference only; ``Runtime`` adds the durable outbox and drift counts::

    from edge_runtime import Runtime
    rt = Runtime("exported_models/seg/20261127T000000Z", outbox_path="outbox.db",
                 device_id="store-7-till-2", secret=deployment_secret)
    result = rt.classify({"Age": 38, "Profession": "Engineer", "ID": "462643"})
    result.segment, result.probabilities, result.seq
"""

from edge_runtime.classifier import BatchResult, Classifier, Result
from edge_runtime.exceptions import (
    EdgeRuntimeError,
    EdgeRuntimeWarning,
    ModelIntegrityError,
    ModelLoadError,
    OutboxError,
    SchemaError,
    SelfTestError,
    SignatureError,
    SyncError,
)
from edge_runtime.outbox import Outbox
from edge_runtime.runtime import Runtime

__version__ = "0.1.0"

__all__ = [
    "BatchResult",
    "Classifier",
    "EdgeRuntimeError",
    "EdgeRuntimeWarning",
    "ModelIntegrityError",
    "ModelLoadError",
    "Outbox",
    "OutboxError",
    "Result",
    "Runtime",
    "SchemaError",
    "SelfTestError",
    "SignatureError",
    "SyncError",
    "__version__",
]
