"""Settings from the environment (and a `.env` file in the working folder), never from code or the repo.

Two layers: `Settings` for the platform (`IP_*` variables: paths, the sandbox URL, partitions), and
`SystemOverrides` per system (`STRIPE_BASE_URL`, `STRIPE_REQUESTS_PER_SECOND`, `STRIPE_MAX_RETRIES` ...).
A system's credentials are named in its spec and read by `connectors.runtime` from the environment. Any secret
may instead be given as `<NAME>_FILE` (a file holding it) or come from the secrets manager (`connectors/secrets.py`).
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .connectors.redaction import register_secret
from .connectors.secrets import SecretFileSettings

_MOTHERDUCK_TOKEN = re.compile(r"[?&]motherduck_token=([^&]+)", re.IGNORECASE)


class Settings(SecretFileSettings):
    model_config = SettingsConfigDict(env_prefix="IP_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path(".data"), description="DAGSTER_HOME, warehouse and spools live here")
    warehouse: str | None = Field(
        default=None, description="DuckDB database: a file path, or an `md:` MotherDuck database"
    )
    landing_url: str | None = Field(
        default=None, description="webhook landing store: unset = the local folder (IP_WEBHOOK_STORE_DIR, else "
        "IP_DATA_DIR); `s3://bucket/prefix` = an S3-compatible bucket shared by several machines, reached with the "
        "standard AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID ...; the `shared-storage` extra)")
    sandbox_url: str = Field(default="http://127.0.0.1:8765", description="where the local emulators listen")
    partitions_start: date = Field(default=date(2026, 1, 1), description="first daily partition")
    enabled_systems: str = Field(default="", description="comma-separated system names; empty = all")
    warehouse_lock_timeout_seconds: float = Field(default=120.0, ge=0)
    batch_rows: int = Field(default=1000, ge=1, description="records per Arrow batch while extracting")
    load_memory_limit: str = Field(
        default="128MB", description="DuckDB memory limit while loading a stream (beyond it, DuckDB spills to "
        "disk; a load that still runs out retries with twice the limit, up to 32 times it)"
    )
    max_new_columns_per_load: int = Field(
        default=200, ge=0, description="new typed columns one load may add to a raw table; an API that starts "
        "sending more new fields at once keeps the rest in `_raw` only (with a warning), so a hostile or broken "
        "schema cannot exhaust memory")
    max_columns_per_table: int = Field(
        default=1000, ge=100, description="typed columns a raw table may have at most (besides `_pk`, `_raw` ...); "
        "fields beyond it stay in `_raw` only (with a warning)")
    duckdb_memory_limit: str | None = Field(
        default=None, description="DuckDB memory limit for models and queries (default: DuckDB's, 80% of RAM)"
    )
    nightly_cron: str = Field(default="0 2 * * *", description="when the nightly sync runs (cron, local time)")
    nightly_reread_days: int = Field(
        default=14, ge=0, le=90,
        description="the nightly run re-reads this many days before its partition for streams that list by "
        "creation time and have no change feed (Square payments, Shopify orders ...), so a refund or an edit days "
        "after a record was created still arrives; 0 = only the partition")
    weekly_full_refresh_cron: str = Field(default="0 3 * * 0", description="weekly full re-read (cron)")
    freshness_hours: float = Field(
        default=26.0, gt=0, description="an extract asset not successfully read for this many hours is WARN in "
        "Dagster's freshness (a nightly schedule plus two hours of slack)")
    freshness_fail_hours: float = Field(
        default=50.0, gt=0, description="... and FAIL after this many (two nightly runs missed); more than "
        "IP_FRESHNESS_HOURS")
    row_count_drop_share: float = Field(
        default=0.1, ge=0, le=1, description="a raw table holding this share fewer rows than after its previous "
        "successful load makes the extract's `row_count_not_dropped` check WARN (upserts never delete, so a drop "
        "means rows were removed outside the load: a reset, a restored or replaced warehouse file)")
    default_owner: str = Field(
        default="", description="owner of every extract asset whose system sets no `<SYSTEM>_OWNER`: an email "
        "address or `team:<name>`, as Dagster accepts; empty = no owner")
    reconciliation_warn_at: int = Field(default=1, ge=1, description="mismatches that make a check WARN")
    reconciliation_error_at: int = Field(default=10, ge=1, description="mismatches that make a check ERROR")
    timezone: str = Field(
        default_factory=lambda: os.environ.get("TZ") or "UTC",
        description="IANA timezone of the schedules (default: $TZ, else UTC)",
    )
    allow_sandbox_data_in_live: bool = Field(
        default=False, description="let syncs write to a real service although the warehouse holds data extracted "
        "from a sandbox (see integration_pipelines/provenance.py); for a test account fed from the sandbox only")
    # IP_WAREHOUSE_FILE: a MotherDuck connection string carries its token, so it may come from a mounted file
    secret_fields: ClassVar[frozenset[str] | None] = frozenset({"warehouse"})


    @field_validator("warehouse")
    @classmethod
    def _register_warehouse_token(cls, value: str | None) -> str | None:
        """A MotherDuck connection string may carry its token (`md:db?motherduck_token=…`), and the database
        string is printed in places (the `tables` title, lock messages): register the token for redaction the
        moment it is read, like every other credential."""
        for match in _MOTHERDUCK_TOKEN.finditer(value or ""):
            register_secret(match.group(1))
        return value

    @model_validator(mode="after")
    def _register_motherduck_environment(self) -> Settings:
        """DuckDB's MotherDuck extension reads its token from the environment on its own: redact that one too."""
        for name in ("motherduck_token", "MOTHERDUCK_TOKEN"):
            register_secret(os.environ.get(name))
        return self

    @model_validator(mode="after")
    def _freshness_windows_in_order(self) -> Settings:
        """Dagster's time-window freshness policy needs the warn window inside the fail window; say so in the
        variables' own names instead of an invariant error from Dagster when the definitions load."""
        if self.freshness_fail_hours <= self.freshness_hours:
            raise ValueError(
                f"IP_FRESHNESS_FAIL_HOURS ({self.freshness_fail_hours:g}) must be more than IP_FRESHNESS_HOURS "
                f"({self.freshness_hours:g}): an extract asset is WARN after the second and FAIL after the first.")
        return self

    @property
    def warehouse_database(self) -> str:
        return self.warehouse or str(self.data_dir / "warehouse.duckdb")

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    def system_enabled(self, name: str) -> bool:
        chosen = {s.strip().lower() for s in self.enabled_systems.split(",") if s.strip()}
        return not chosen or name in chosen


class SystemOverrides(BaseSettings):
    """Per-system knobs; instantiate with `_env_prefix="STRIPE_"` and friends."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    base_url: str | None = None
    token_url: str | None = None
    enabled: bool = True
    requests_per_second: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0, description="retries after the first attempt")
    backoff_base_seconds: float | None = Field(default=None, ge=0, description="first retry's backoff cap")
    backoff_cap_seconds: float | None = Field(default=None, ge=0)
    timeout_seconds: float = Field(default=30.0, gt=0)
    page_size: int | None = Field(default=None, ge=1)
    log_requests: bool = Field(
        default=False, description="every request of this system in the run log, not only retries and errors"
    )
    owner: str | None = Field(
        default=None, description="owner of this system's extract assets in Dagster (an email address or "
        "`team:<name>`); unset = IP_DEFAULT_OWNER")


def load_settings() -> Settings:
    return Settings()


def load_overrides(system_name: str) -> SystemOverrides:
    return SystemOverrides(_env_prefix=f"{system_name.upper()}_")  # type: ignore[call-arg]
