"""Stores as people read them: a display name beside the store id devices were registered with.

The id stays the key (filters, URLs, rollouts' canary lists); the name is only shown, as
``Leeds Briggate (store-7)``, so a renamed store keeps its history.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from central.models import Device, StoreName, utc_now
from central.services.errors import NotFound, Rejected

__all__ = ["MAX_NAME_CHARS", "display_names", "label", "rename_store"]

MAX_NAME_CHARS = 200


def rename_store(session: Session, store: str, display_name: str) -> StoreName:
    """Give ``store`` (a store some device is registered with) the name ``display_name``.

    Refused (NotFound) for a store no device has, so a typo does not name a store that does not
    exist; (Rejected) for an empty or over-long name."""
    name = display_name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise Rejected(f"a store name must be 1-{MAX_NAME_CHARS} characters, got {display_name!r}")
    known = sorted(set(session.scalars(select(Device.store))))
    if store not in known:
        raise NotFound(f"no device is registered with store {store!r}; known stores: {known}")
    row = session.get(StoreName, store)
    if row is None:
        row = StoreName(store=store, display_name=name, renamed_at=utc_now())
        session.add(row)
    else:
        row.display_name, row.renamed_at = name, utc_now()
    session.commit()
    return row


def display_names(session: Session) -> dict[str, str]:
    """Every named store's display name, by store id."""
    return {row.store: row.display_name for row in session.scalars(select(StoreName))}


def label(store: str, names: dict[str, str]) -> str:
    """``Leeds Briggate (store-7)`` where the store has a name, else the id alone."""
    name = names.get(store)
    return store if name is None else f"{name} ({store})"
