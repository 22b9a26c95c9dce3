"""Central's settings: one pydantic-settings class, reached through the cached ``get_settings()``.

Every field reads ``EDGESEG_<NAME>`` from the environment. Tests build ``Settings(...)`` directly
and hand it to ``create_app(settings)``, or call ``get_settings.cache_clear()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge_runtime.artifact import default_public_key_path

__all__ = [
    "DEFAULT_ADMIN_TOKEN",
    "MIN_ADMIN_TOKEN_CHARS",
    "Settings",
    "default_admin_token_file",
    "default_data_dir",
    "describe_database",
    "ensure_admin_token_file",
    "get_settings",
]

# The admin token of EDGESEG_ENV=development when none is given; refused in any other env.
DEFAULT_ADMIN_TOKEN = "change-me"
# Outside development the admin token needs this many characters that are not whitespace.
MIN_ADMIN_TOKEN_CHARS = 16


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where central keeps its default SQLite file and generated admin token.

    ``$EDGESEG_DATA_DIR``, else ``$XDG_DATA_HOME/edgeseg``, else ``~/.local/share/edgeseg``:
    an absolute place, so every ``edgeseg-central`` command finds the same database whatever
    folder it runs from (a path relative to the working folder once made ``device add`` write
    a token into a new database the running server never read).
    """
    env = os.environ if environ is None else environ
    if env.get("EDGESEG_DATA_DIR"):
        return Path(env["EDGESEG_DATA_DIR"]).expanduser().absolute()
    base = Path(env["XDG_DATA_HOME"]) if env.get("XDG_DATA_HOME") else Path.home() / ".local" / "share"
    return base.expanduser().absolute() / "edgeseg"


def default_admin_token_file(environ: Mapping[str, str] | None = None) -> Path:
    return default_data_dir(environ) / "admin_token"


def _default_database_url() -> str:
    # A SQLite file in the data directory: zero set-up, the same file from any folder.
    return f"sqlite:///{default_data_dir() / 'central.db'}"


def describe_database(url: str) -> str:
    """The database URL as the CLI prints it: the password hidden, a SQLite path absolute."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return f"{parsed.drivername}:///{Path(parsed.database).absolute()}"
    return parsed.render_as_string(hide_password=True)


class Settings(BaseSettings):
    """Everything central can be told; ``EDGESEG_`` + the upper-case field name sets it."""

    model_config = SettingsConfigDict(env_prefix="EDGESEG_", extra="ignore", populate_by_name=True)

    env: Literal["development", "production", "test"] = "production"
    database_url: str = Field(default_factory=_default_database_url)
    # EDGESEG_ADMIN_TOKEN, else the first line of EDGESEG_ADMIN_TOKEN_FILE (which
    # ``edgeseg-central`` creates with a random token on first use, like the factory's key).
    admin_token: str = ""
    admin_token_file: Path = Field(default_factory=default_admin_token_file)
    # The contract's key-folder rule, shared with the factory and devices:
    # $EDGESEG_KEY_DIR/signing_key.pub.pem, else ~/.config/edgeseg/keys/signing_key.pub.pem.
    # One variable on devices and central: EDGESEG_PUBLIC_KEY (EDGESEG_PUBLIC_KEY_PATH, the old
    # central name, still works; the CLI warns that it is deprecated).
    public_key_path: Path = Field(
        default_factory=lambda: default_public_key_path(),
        validation_alias=AliasChoices("EDGESEG_PUBLIC_KEY", "EDGESEG_PUBLIC_KEY_PATH", "public_key_path"),
    )
    # Bounds of POST /v1/results:batch (the sync client sends 500 by default).
    max_batch_results: int = Field(default=1000, gt=0)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Artifacts are small (the factory's size budget is 256 KiB); this bounds an upload (its
    # decoded files; the JSON body of POST /v1/models may be 4/3 of it, base64, plus 64 KiB).
    max_artifact_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # A result classified further ahead of central's clock than this is refused (422): a till
    # with a wrong clock, or a crafted timestamp.
    max_future_skew_s: float = Field(default=86400.0, ge=0)
    drift_psi_threshold: float = Field(default=0.2, gt=0)
    # Privacy (docs/PRIVACY.md). A device's noised reports may spend this much ε (and δ) per
    # UTC day; a report beyond is refused with 409 naming the budget. Same default as devices.
    dp_epsilon_per_day: float = Field(default=2.0, gt=0)
    dp_delta_per_day: float = Field(default=1e-6, ge=0, lt=1)
    # Head office never shows a store x day x segment cell (or an outcome count) built from
    # fewer customers than this: the dashboard and every export suppress it.
    small_cell_k: int = Field(default=10, ge=1)
    # The deployment secret devices pseudonymise customer ids with (EDGESEG_SECRET on a till),
    # when head office holds it by design: `customer erase` then takes a raw id. Unset: refs only.
    pseudonym_secret: str = Field(default="", repr=False)
    # Run Alembic's upgrade when the app starts (off when an operator migrates separately).
    auto_migrate: bool = True
    db_pool_size: int = Field(default=5, gt=0)

    @model_validator(mode="after")
    def _refuse_insecure_admin_token(self) -> Settings:
        if not self.admin_token and self.admin_token_file.is_file():
            lines = self.admin_token_file.read_text(encoding="utf-8").splitlines()
            self.admin_token = lines[0].strip() if lines else ""
        if not self.admin_token and self.env == "development":
            self.admin_token = DEFAULT_ADMIN_TOKEN
        if self.env != "development" and self.admin_token in ("", DEFAULT_ADMIN_TOKEN):
            raise ValueError(
                "EDGESEG_ADMIN_TOKEN must be set to a secret outside development "
                f"(got {'an empty value' if not self.admin_token else 'the default'}); "
                "set EDGESEG_ENV=development to run with the default on your own machine"
            )
        meaningful = len("".join(self.admin_token.split()))
        if self.env != "development" and meaningful < MIN_ADMIN_TOKEN_CHARS:
            raise ValueError(
                f"EDGESEG_ADMIN_TOKEN must hold at least {MIN_ADMIN_TOKEN_CHARS} non-whitespace characters "
                f"outside development (got {meaningful})"
            )
        return self

    @property
    def docs_enabled(self) -> bool:
        """Swagger UI and ReDoc load their scripts from a CDN: development only."""
        return self.env == "development"


def ensure_admin_token_file(environ: dict[str, str] | None = None) -> Path | None:
    """Create the admin token file with a random token if no token is configured at all.

    Returns the path when it was just created (the CLI says so), else None. Zero set-up for
    ``edgeseg-central serve`` without a guessable default: read the token from the file.
    """
    env = os.environ if environ is None else environ
    if env.get("EDGESEG_ADMIN_TOKEN") or env.get("EDGESEG_ENV") == "development":
        return None
    path = Path(env.get("EDGESEG_ADMIN_TOKEN_FILE") or default_admin_token_file(env))
    if path.exists():
        return None
    import secrets

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    return path


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
