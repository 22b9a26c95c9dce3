"""What a service refuses, and with which HTTP status the API answers it.

    ServiceError               (status_code, detail)
    ├── NotFound     404       also a LookupError (the CLI catches it as one)
    ├── Forbidden    403
    ├── Conflict     409       the request contradicts what central holds (a result replayed
    │                          with other content, a rollback order used twice, a downgrade)
    ├── TooLarge     413
    ├── Rejected     422       also a ValueError
    │   ├── ArtifactRejected   an artifact failed verification (central.services.models)
    │   └── BatchRejected      a result breaks the contract (central.services.results)
    └── Unavailable  503

The status lives here rather than in the routes so that one exception handler
(``central.main``) answers every refusal the same way: ``{"detail": <text>}``.
"""

from __future__ import annotations

__all__ = [
    "ArtifactRejected",
    "BatchRejected",
    "Conflict",
    "Forbidden",
    "NotFound",
    "Rejected",
    "ServiceError",
    "TooLarge",
    "Unavailable",
]


class ServiceError(Exception):
    """A request central refuses; ``detail`` is the text the client reads."""

    status_code = 422

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError, LookupError):
    status_code = 404


class Forbidden(ServiceError):
    status_code = 403


class Conflict(ServiceError):
    status_code = 409


class TooLarge(ServiceError):
    status_code = 413


class Rejected(ServiceError, ValueError):
    status_code = 422


class ArtifactRejected(Rejected):
    """The artifact failed verification or does not describe a usable classifier."""


class BatchRejected(Rejected):
    """A result breaks the contract; ``detail`` names it. Nothing of the batch is stored."""


class Unavailable(ServiceError):
    status_code = 503
