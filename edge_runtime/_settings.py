"""Every edge runtime default and every ``EDGESEG_*`` variable it reads, in one place.

Nothing here runs at import time: :func:`get_settings` reads the environment (and an optional
JSON config file) when it is called, so tests can set variables and call it again. Code deeper
in the package takes explicit arguments; only the CLI turns settings into those arguments.

Variables (flags of ``edge-runtime`` override them; a config file is overridden by both):

=========================== ================================================================
``EDGESEG_CONFIG``          JSON file with any of the keys below (lower case, no prefix)
``EDGESEG_KEY_DIR``         folder of ``signing_key.pub.pem`` (same rule as the factory)
``EDGESEG_PUBLIC_KEY``      path of the trusted public key (overrides the key folder)
``EDGESEG_ARTIFACT``        artifact folder to serve
``EDGESEG_OUTBOX``          SQLite outbox path (default ``~/.local/share/edgeseg/outbox.db``)
``EDGESEG_DEVICE_ID``       this device's id (default: the host name)
``EDGESEG_SECRET``          per-deployment secret for pseudonymising customer ids
``EDGESEG_DURABILITY``      ``process`` (default) or ``power``
``EDGESEG_MAX_BACKLOG``     unsynced results before the runtime warns (default 1,000,000)
``EDGESEG_HOST`` / ``_PORT`` ``serve`` address (default 127.0.0.1:8765)
``EDGESEG_CENTRAL_URL``     head office base URL (``sync``, ``update``)
``EDGESEG_DEVICE_TOKEN``    this device's token at head office (secret: never a flag)
``EDGESEG_DEVICE_TOKEN_FILE`` file holding the token instead (wins over the variable)
``EDGESEG_SYNC_INTERVAL_S`` seconds between ``sync --follow`` rounds (default 5)
``EDGESEG_DRIFT_INTERVAL_S`` seconds between drift reports of ``sync --follow`` (default 900);
                            ``serve`` saves its drift counts every min(60, this) seconds
=========================== ================================================================

The key folder rule is the artifact contract's (``edge_runtime.artifact.default_key_dir``).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from edge_runtime.artifact import PUBLIC_KEY_NAME, default_public_key_path

__all__ = [
    "DEFAULT_MAX_STRING_LENGTH",
    "PUBLIC_KEY_NAME",
    "Settings",
    "default_public_key_path",
    "get_settings",
]

# Cap on a string field when the manifest gives no max_length (the factory's own cap).
DEFAULT_MAX_STRING_LENGTH = 256
DURABILITIES = ("process", "power")
DEFAULT_MAX_BACKLOG = 1_000_000
# Rows per classify_many call above which the threaded batch session is used.
BATCH_SESSION_MIN_ROWS = 256
DEFAULT_SYNC_INTERVAL_S = 5.0
# A quarter of an hour: PSI over fewer rows is noise, and a fleet's dashboard is not a pager.
DEFAULT_DRIFT_INTERVAL_S = 900.0


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Resolved configuration of one ``edge-runtime`` invocation."""

    artifact: Path | None = None
    public_key: Path | None = None
    outbox: Path = Path.home() / ".local" / "share" / "edgeseg" / "outbox.db"
    device_id: str = ""
    secret: str | None = field(default=None, repr=False)
    durability: str = "process"
    max_backlog: int = DEFAULT_MAX_BACKLOG
    host: str = "127.0.0.1"
    port: int = 8765
    central_url: str | None = None
    device_token: str | None = field(default=None, repr=False)
    device_token_file: Path | None = None
    sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S
    drift_interval_s: float = DEFAULT_DRIFT_INTERVAL_S

    def __post_init__(self) -> None:
        if self.durability not in DURABILITIES:
            raise ValueError(
                f"The 'durability' setting must be one of {DURABILITIES}. Got {self.durability!r} instead."
            )
        if self.max_backlog < 1:
            raise ValueError(f"The 'max_backlog' setting must be >= 1. Got {self.max_backlog!r} instead.")
        for name in ("sync_interval_s", "drift_interval_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"The {name!r} setting must be > 0 seconds. Got {value!r} instead.")

    def read_device_token(self) -> str | None:
        """The head office token: the token file's content if one is set, else the variable."""
        if self.device_token_file is not None:
            try:
                return self.device_token_file.read_text(encoding="utf-8").strip() or None
            except OSError as exc:
                raise ValueError(f"cannot read the device token file {str(self.device_token_file)!r}: {exc}") from exc
        return self.device_token or None

    def updated(self, **overrides: Any) -> Settings:
        """A copy with the given non-None overrides (CLI flags) applied."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


_CONVERTERS: dict[str, Any] = {
    "artifact": Path,
    "public_key": Path,
    "outbox": Path,
    "device_id": str,
    "secret": str,
    "durability": str,
    "max_backlog": int,
    "host": str,
    "port": int,
    "central_url": str,
    "device_token": str,
    "device_token_file": Path,
    "sync_interval_s": float,
    "drift_interval_s": float,
}


def get_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the config file (``EDGESEG_CONFIG``) then ``EDGESEG_*`` variables."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config = env.get("EDGESEG_CONFIG")
    if config:
        try:
            loaded = json.loads(Path(config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read EDGESEG_CONFIG file {config!r}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ValueError(f"EDGESEG_CONFIG file {config!r} must hold a JSON object")
        unknown = sorted(set(loaded) - set(_CONVERTERS))
        if unknown:
            raise ValueError(
                f"EDGESEG_CONFIG file {config!r} has unknown keys {unknown}; allowed: {sorted(_CONVERTERS)}"
            )
        values.update(loaded)
    for name in (f.name for f in fields(Settings)):
        raw = env.get(f"EDGESEG_{name.upper()}")
        if raw:
            values[name] = raw
    try:
        converted = {k: _CONVERTERS[k](v) for k, v in values.items()}
    except ValueError as exc:
        raise ValueError(f"invalid edge runtime setting: {exc}") from exc
    if not converted.get("public_key"):
        converted["public_key"] = default_public_key_path(env)
    if not converted.get("device_id"):
        converted["device_id"] = socket.gethostname() or "device"
    return Settings(**converted)
