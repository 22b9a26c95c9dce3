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
``EDGESEG_CONTRACT``        input contract: ``strict`` (default: inputs training never saw
                            missing are required, unknown field names refused) or ``lenient``
``EDGESEG_MAX_BACKLOG``     unsynced results before the runtime warns (default 1,000,000)
``EDGESEG_HOST`` / ``_PORT`` ``serve`` address (default 127.0.0.1:8765)
``EDGESEG_CENTRAL_URL``     head office base URL (``sync``, ``update``)
``EDGESEG_DEVICE_TOKEN``    this device's token at head office (secret: never a flag)
``EDGESEG_DEVICE_TOKEN_FILE`` file holding the token instead (wins over the variable)
``EDGESEG_SYNC_INTERVAL_S`` seconds between ``sync --follow`` rounds (default 5)
``EDGESEG_DRIFT_INTERVAL_S`` seconds between drift reports of ``sync --follow`` (default 900);
                            ``serve`` saves its drift counts every min(60, this) seconds
``EDGESEG_ALLOW_HTTP``      ``1`` accepts a plain ``http://`` central URL (development only:
                            the device token travels in clear text); default: https only
``EDGESEG_RETAIN_SYNCED_ROWS`` synced results kept in the outbox (default 100,000; older synced
                            ones are pruned; unsynced results are never pruned)
``EDGESEG_RETAIN_SYNCED_DAYS`` synced results older than this are pruned (default 30 days)
``EDGESEG_MIN_FREE_MB``     warn when the outbox's disk has less free space (default 256 MB)
``EDGESEG_SERVE_ALLOWED_ORIGINS`` comma-separated browser origins ``serve`` accepts (default
                            none: a request carrying an ``Origin`` header is refused)
``EDGESEG_DP_EPSILON``      differential-privacy budget ε per device per UTC day for the noised
                            drift and segment-mix reports ``sync`` sends (default 2.0; ``0``
                            sends exact counts: development only, docs/PRIVACY.md)
``EDGESEG_DP_REPORTS_PER_DAY`` noised reports per UTC day, each spending ε / this (default 1)
``EDGESEG_DP_MECHANISM``    ``laplace`` (default, pure ε-DP) or ``gaussian`` (needs δ)
``EDGESEG_DP_DELTA``        δ per day of the Gaussian mechanism (default 0; 1e-6 is typical)
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
from edge_runtime.privacy import DEFAULT_DP_EPSILON, DEFAULT_DP_REPORTS_PER_DAY, PrivacyBudget

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
CONTRACTS = ("strict", "lenient")  # edge_runtime._schema's input contracts
DEFAULT_MAX_BACKLOG = 1_000_000
# Rows per classify_many call above which the threaded batch session is used.
BATCH_SESSION_MIN_ROWS = 256
DEFAULT_SYNC_INTERVAL_S = 5.0
# A quarter of an hour: PSI over fewer rows is noise, and a fleet's dashboard is not a pager.
DEFAULT_DRIFT_INTERVAL_S = 900.0
# Outbox retention: enough synced history to answer "what did this till say last week" locally,
# bounded so the file cannot fill the disk (~120 bytes a row: 100k rows are ~12 MB).
DEFAULT_RETAIN_SYNCED_ROWS = 100_000
DEFAULT_RETAIN_SYNCED_DAYS = 30.0
# Below this much free space on the outbox's file system the runtime warns (a full disk stops
# classification: results are never returned unstored).
DEFAULT_MIN_FREE_MB = 256.0
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Resolved configuration of one ``edge-runtime`` invocation."""

    artifact: Path | None = None
    public_key: Path | None = None
    outbox: Path = Path.home() / ".local" / "share" / "edgeseg" / "outbox.db"
    device_id: str = ""
    secret: str | None = field(default=None, repr=False)
    durability: str = "process"
    contract: str = "strict"
    max_backlog: int = DEFAULT_MAX_BACKLOG
    host: str = "127.0.0.1"
    port: int = 8765
    central_url: str | None = None
    device_token: str | None = field(default=None, repr=False)
    device_token_file: Path | None = None
    sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S
    drift_interval_s: float = DEFAULT_DRIFT_INTERVAL_S
    allow_http: bool = False
    retain_synced_rows: int = DEFAULT_RETAIN_SYNCED_ROWS
    retain_synced_days: float = DEFAULT_RETAIN_SYNCED_DAYS
    min_free_mb: float = DEFAULT_MIN_FREE_MB
    serve_allowed_origins: tuple[str, ...] = ()
    dp_epsilon: float = DEFAULT_DP_EPSILON
    dp_reports_per_day: int = DEFAULT_DP_REPORTS_PER_DAY
    dp_mechanism: str = "laplace"
    dp_delta: float = 0.0

    def __post_init__(self) -> None:
        self.privacy_budget()  # refuses a bad ε, δ, mechanism or report count by name
        if self.durability not in DURABILITIES:
            raise ValueError(
                f"The 'durability' setting must be one of {DURABILITIES}. Got {self.durability!r} instead."
            )
        if self.contract not in CONTRACTS:
            raise ValueError(f"The 'contract' setting must be one of {CONTRACTS}. Got {self.contract!r} instead.")
        if self.max_backlog < 1:
            raise ValueError(f"The 'max_backlog' setting must be >= 1. Got {self.max_backlog!r} instead.")
        for name in ("sync_interval_s", "drift_interval_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"The {name!r} setting must be > 0 seconds. Got {value!r} instead.")
        if not self.retain_synced_days > 0:
            raise ValueError(f"The 'retain_synced_days' setting must be > 0. Got {self.retain_synced_days!r} instead.")
        if self.retain_synced_rows < 0 or self.min_free_mb < 0:
            raise ValueError(
                "The 'retain_synced_rows' and 'min_free_mb' settings must be >= 0. "
                f"Got {self.retain_synced_rows!r} and {self.min_free_mb!r} instead."
            )

    def privacy_budget(self) -> PrivacyBudget | None:
        """The noise budget of synced aggregates; None (exact counts) when ``dp_epsilon`` is 0."""
        if self.dp_epsilon == 0:
            return None
        return PrivacyBudget(
            epsilon=self.dp_epsilon,
            reports_per_day=self.dp_reports_per_day,
            mechanism=self.dp_mechanism,
            delta=self.dp_delta,
        )

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


def _boolean(value: Any) -> bool:
    """A JSON boolean, or 1/0, true/false, yes/no, on/off (any case)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"expected a boolean (1/0, true/false, yes/no, on/off), got {value!r}")


def _origins(value: Any) -> tuple[str, ...]:
    """A comma-separated string (variable) or a JSON list (config file) of origins."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip().rstrip("/") for item in items if str(item).strip())


_CONVERTERS: dict[str, Any] = {
    "artifact": Path,
    "public_key": Path,
    "outbox": Path,
    "device_id": str,
    "secret": str,
    "durability": str,
    "contract": str,
    "max_backlog": int,
    "host": str,
    "port": int,
    "central_url": str,
    "device_token": str,
    "device_token_file": Path,
    "sync_interval_s": float,
    "drift_interval_s": float,
    "allow_http": _boolean,
    "retain_synced_rows": int,
    "retain_synced_days": float,
    "min_free_mb": float,
    "serve_allowed_origins": _origins,
    "dp_epsilon": float,
    "dp_reports_per_day": int,
    "dp_mechanism": str,
    "dp_delta": float,
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
