"""Errors raised by the edge runtime.

The tree, so callers can catch as broadly or as narrowly as they need::

    EdgeRuntimeError (RuntimeError)
    ├── SchemaError (also ValueError)      a record breaks the manifest's input schema
    ├── ModelLoadError                     an artifact cannot be served
    │   ├── ManifestError (also ValueError) manifest.json breaks the contract (``field`` names where)
    │   ├── SignatureError                 manifest.sig does not verify with the trusted key
    │   ├── ModelIntegrityError            model.onnx does not match the manifest's sha256
    │   └── SelfTestError                  the golden samples do not reproduce
    ├── SyncError (also OSError)           head office refused a request (``status``) or stayed away
    │   └── RetryableError                 a transient failure: no connection, 408/429/5xx, a cut reply
    └── OutboxError (also OSError)         a result could not be stored (so it is not returned)

    EdgeRuntimeWarning (UserWarning)       something a user should see that does not stop work
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:  # the report type lives with the sync protocol, which imports this module
    from edge_runtime.sync import SyncReport

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


class ManifestError(ModelLoadError, ValueError):
    """manifest.json breaks the artifact contract (``edge_runtime.artifact``).

    ``field`` is the path of the offending field (e.g. ``inputs[3].type``), so a build log or
    a registry upload error says exactly what to fix.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"manifest.json {field}: {problem}")


class SignatureError(ModelLoadError):
    """The manifest signature does not verify with the trusted public key."""


class ModelIntegrityError(ModelLoadError):
    """A file of the artifact does not match what the signed manifest says about it."""


class SelfTestError(ModelLoadError):
    """The model does not reproduce its golden samples on this device."""


class SyncError(EdgeRuntimeError, OSError):
    """A request to head office failed; whatever it carried stays on the device.

    ``status`` is central's HTTP status when it answered (None: no answer), ``retry_after``
    the seconds central asked the device to wait (``Retry-After``), and ``report`` what a sync
    round delivered before it failed (an ``edge_runtime.sync.SyncReport``, or None).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        report: SyncReport | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.report = report

    def with_report(self, report: SyncReport) -> Self:
        """The same error (class, message, fields) carrying what the round did before it."""
        return type(self)(str(self), status=self.status, retry_after=self.retry_after, report=report)


class RetryableError(SyncError):
    """A failure worth retrying: no connection, a timeout, 408/425/429/5xx or a reply cut short.

    The head office client retries these with its backoff policy (``Retry-After`` honoured);
    any other ``SyncError`` is central refusing the request and is final.
    """


class EdgeRuntimeWarning(UserWarning):
    """A condition worth a user's attention that does not stop classification."""


class OutboxError(EdgeRuntimeError, OSError):
    """A result could not be committed to the outbox, so it was not returned either."""
