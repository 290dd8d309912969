"""Sync settings (`IP_SYNC_*`): the per-record attempt limit and backoff, and each sync's start.

- `IP_SYNC_MAX_ATTEMPTS` (default 5): a record the target keeps refusing is sent at most this many times (per
  version of the record: a changed row starts again at 1), then it is **parked**: not sent again until an operator
  runs `integration-pipelines sync retry`.
- `IP_SYNC_RETRY_BACKOFF_SECONDS` (default 300) and `IP_SYNC_RETRY_BACKOFF_CAP_SECONDS` (default 21600): after its
  n-th refusal a record waits `backoff * 2^(n-1)` seconds, at most the cap, before a run sends it again (5, 10, 20,
  40 minutes ...). Runs in between leave it alone and count it as `backoff`.
- `IP_SYNC_<NAME>_START` (e.g. `IP_SYNC_PAYMENT_RECEIPTS_TO_MAILER_START=2026-03-01`) or, for every sync without
  its own, `IP_SYNC_START`: an ISO date or date-time (UTC unless it names an offset). A sync acts only on source
  records whose `start_column` is at or after its start. Unset, the start is the moment the sync first ran against
  this warehouse, recorded once in `sync.starts`.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..connectors.errors import ConfigurationError


class SyncSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IP_SYNC_", env_file=".env", extra="ignore")

    max_attempts: int = Field(default=5, ge=1, description="sends of a refused record before it is parked")
    retry_backoff_seconds: float = Field(default=300.0, ge=0, description="wait after a record's first refusal")
    retry_backoff_cap_seconds: float = Field(default=21600.0, ge=0, description="longest wait between sends")
    start: str | None = Field(default=None, description="start of every sync without IP_SYNC_<NAME>_START")

    def backoff(self, attempts: int) -> timedelta:
        """How long a record refused `attempts` times waits before the next send."""
        seconds = self.retry_backoff_seconds * 2 ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.retry_backoff_cap_seconds))

    def configured_start(self, sync_name: str) -> tuple[datetime, str] | None:
        """The start set in the environment (or `.env`) for this sync, and the variable it came from."""
        own = f"IP_SYNC_{sync_name.upper()}_START"
        value = os.environ.get(own) or _dotenv().get(own)
        if value:
            return parse_start(value, own), own
        if self.start:
            return parse_start(self.start, "IP_SYNC_START"), "IP_SYNC_START"
        return None


def _dotenv() -> dict[str, str]:
    path = Path(".env")
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def parse_start(value: str, variable: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC unless it carries an offset)."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"{variable}={value!r} is not a date or date-time; write it like 2026-03-01 or "
            "2026-03-01T08:00:00+01:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
