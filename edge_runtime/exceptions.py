"""Errors raised by the edge runtime.

The tree, so callers can catch as broadly or as narrowly as they need::

    EdgeRuntimeError (RuntimeError)
    ├── SchemaError (also ValueError)      a record breaks the manifest's input schema
    ├── ModelLoadError                     an artifact cannot be served
    │   ├── SignatureError                 manifest.sig does not verify with the trusted key
    │   ├── ModelIntegrityError            model.onnx does not match the manifest's sha256
    │   └── SelfTestError                  the golden samples do not reproduce
    └── SyncError (also OSError)           head office could not be reached or refused a batch

    EdgeRuntimeWarning (UserWarning)       something a user should see that does not stop work
"""

from __future__ import annotations


class EdgeRuntimeError(RuntimeError):
    """Base class of every error the edge runtime raises on purpose."""


class SchemaError(EdgeRuntimeError, ValueError):
    """A record does not fit the model's input schema.

    ``field``, ``value`` and ``rule`` say which field broke which rule, so a till can show it.
    """

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"field {field!r}: {rule} (got {value!r})")


class ModelLoadError(EdgeRuntimeError):
    """An artifact was refused; the runtime keeps serving its previous model."""


class SignatureError(ModelLoadError):
    """The manifest signature does not verify with the trusted public key."""


class ModelIntegrityError(ModelLoadError):
    """A file of the artifact does not match what the signed manifest says about it."""


class SelfTestError(ModelLoadError):
    """The model does not reproduce its golden samples on this device."""


class SyncError(EdgeRuntimeError, OSError):
    """Results could not be delivered to head office (they stay in the outbox)."""


class EdgeRuntimeWarning(UserWarning):
    """A condition worth a user's attention that does not stop classification."""
