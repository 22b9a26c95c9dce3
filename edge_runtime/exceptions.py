"""Errors raised by the edge runtime.

The tree, so callers can catch as broadly or as narrowly as they need::

    EdgeRuntimeError (RuntimeError)
    ├── SchemaError (also ValueError)      a record breaks the manifest's input schema
    ├── ModelLoadError                     an artifact cannot be served
    │   ├── SignatureError                 manifest.sig does not verify with the trusted key
    │   ├── ModelIntegrityError            model.onnx does not match the manifest's sha256
    │   └── SelfTestError                  the golden samples do not reproduce
    ├── SyncError (also OSError)           head office could not be reached or refused a batch
    └── OutboxError (also OSError)         a result could not be stored (so it is not returned)

    EdgeRuntimeWarning (UserWarning)       something a user should see that does not stop work
"""

from __future__ import annotations

_MAX_SHOWN = 80


class EdgeRuntimeError(RuntimeError):
    """Base class of every error the edge runtime raises on purpose."""


class SchemaError(EdgeRuntimeError, ValueError):
    """A record does not fit the model's input schema.

    ``field``, ``value`` and ``rule`` say which field broke which rule, so a till can show it.
    """

    def __init__(self, field: str, value: object, rule: str, *, row: int | None = None) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        self.row = row  # index of the record in a batch, None for a single record
        shown = repr(value)
        if len(shown) > _MAX_SHOWN:  # a 1 MB string must not become a 1 MB log line
            shown = f"{shown[: _MAX_SHOWN - 1]}…"
        where = "" if row is None else f"record {row}: "
        super().__init__(f"{where}field {field!r}: {rule} (got {shown})")


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


class OutboxError(EdgeRuntimeError, OSError):
    """A result could not be committed to the outbox, so it was not returned either."""
