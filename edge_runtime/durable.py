"""Writes that survive power loss: fsync the file, then the folder that names it.

A rename or a new file is durable only once its directory is fsynced too; the model updater
(``edge_runtime.updates``) and the rollback ledger (``edge_runtime.rollback``) use these.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "write_durably", "write_synced"]


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries (new names, renames) durable: fsync the directory itself."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, content: bytes) -> None:
    """Write ``content`` and fsync the file (its name is durable after ``fsync_dir``)."""
    with open(path, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


def write_durably(path: Path, content: bytes) -> None:
    """Replace ``path`` so that power loss leaves the old file or the new one, whole."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_synced(temporary, content)
    os.replace(temporary, path)
    fsync_dir(path.parent)
