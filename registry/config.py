"""Settings from the environment (PATCHREG_*), with the embedded default under PATCHREG_HOME."""

from __future__ import annotations

import getpass
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the registry keeps its data.

    `home` holds the embedded default: `registry.db` (SQLite) and `artifacts/`. `database_url` and
    `store` override either one, e.g. PostgreSQL plus a shared volume or an S3 bucket
    (`s3://bucket/prefix`: then `<home>/s3-cache` keeps verified local copies for readers).
    """

    model_config = SettingsConfigDict(env_prefix="PATCHREG_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".patchreg")
    database_url: str | None = None
    store: str | None = None  # a directory, or s3://bucket/prefix
    actor: str | None = None
    # HTTP API: reads may be opened to callers without a token; writes always need one.
    api_open_reads: bool = False
    api_max_upload_bytes: int = Field(default=1 << 30, gt=0)  # one multipart upload (patch, dataset)
    api_max_json_bytes: int = Field(default=1 << 20, gt=0)  # any other request body
    # Temp files (`<store>/tmp/`) and unreferenced blobs untouched for this long are stale: swept
    # at server/worker start and collected by `patchreg gc`. Younger ones may belong to a write
    # still in progress (in this or another process), so they are always kept.
    temp_age_guard_seconds: float = Field(default=3600.0, ge=0)
    # Verified local copies of bases registered from s3:// (one folder per listing revision).
    base_cache_dir: Path | None = None

    @property
    def base_cache(self) -> Path:
        return (self.base_cache_dir or self.home / "base-cache").resolve()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'registry.db').resolve()}"

    @property
    def store_url(self) -> str | None:
        """The object-store URL when the store is one (`s3://…`), else None."""
        return self.store if self.store and self.store.startswith("s3://") else None

    @property
    def artifact_root(self) -> Path:
        """The store's directory on this machine: the store itself, or an object store's cache."""
        if self.store_url:
            return (self.home / "s3-cache").resolve()
        return (Path(self.store) if self.store else self.home / "artifacts").resolve()

    @property
    def resolved_actor(self) -> str:
        if self.actor:
            return self.actor
        try:
            return getpass.getuser()
        except Exception:  # no user database entry (containers)
            return "unknown"
