"""What an operator does with failed records, shared by the CLI (`sync errors|skip|retry|history`) and the sync
assets' run config (`skip_keys`, `retry_keys`, `retry_all`).

- **errors**: the records that are failing (waiting for their next attempt), parked (attempts used up), skipped
  (acknowledged) or in doubt, with their attempts, last error and next attempt.
- **skip**: acknowledge records: never sent again, listed as skipped, not counted as failures. Works for any
  record of the source or the ledger that is not already in the target.
- **retry**: failing, parked or skipped records start again at zero attempts with no backoff, so the next run
  sends them. Records in doubt are not retried this way: a second send could create a second record (their
  procedure is in docs/syncs.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from ..warehouse.duckdb import quote_ident
from .engine import load_sync_settings
from .ledger import ensure_ledger
from .spec import SyncSpec

RETRYABLE = ("failed", "parked", "skipped")
LISTED = ("failed", "parked", "skipped", "in_doubt")


class RecordsNotFoundError(ValueError):
    """Keys the operator named that the command cannot act on; the message says why for each."""


@dataclass(frozen=True)
class FailingRecord:
    key: str
    status: str  # failed | parked | skipped | in_doubt
    operation: str | None
    attempts: int
    first_error_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None
    next_attempt_at: datetime | None
    skip_reason: str | None

    def as_json(self) -> dict[str, Any]:
        def when(value: datetime | None) -> str | None:
            return value.astimezone(UTC).isoformat() if value else None

        return {"key": self.key, "status": self.status, "operation": self.operation, "attempts": self.attempts,
                "first_error_at": when(self.first_error_at), "last_error_at": when(self.last_error_at),
                "last_error": self.last_error, "next_attempt_at": when(self.next_attempt_at),
                "skip_reason": self.skip_reason}

    def next_attempt(self, now: datetime | None = None) -> str:
        """When the next run may send it, in words an operator reads."""
        if self.status == "parked":
            return "never (parked: `sync retry`)"
        if self.status == "skipped":
            return "never (skipped)"
        if self.status == "in_doubt":
            return "never (in doubt: check the target)"
        if self.next_attempt_at is None or self.next_attempt_at <= (now or datetime.now(UTC)):
            return "next run"
        return self.next_attempt_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    """Columns of a sync.* table (none when it does not exist): read-only commands meet older warehouses too."""
    return {c for (c,) in con.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                      "'sync' AND table_name = ?", [table]).fetchall()}


def failing_records(con: duckdb.DuckDBPyConnection, sync_name: str) -> list[FailingRecord]:
    """Read-only: failing first, then parked, skipped and in doubt; each group by key."""
    if not _columns(con, "ledger"):
        return []
    attempts = ("sync.attempts" if _columns(con, "attempts") else
                "(SELECT NULL::VARCHAR AS sync_name, NULL::VARCHAR AS record_key, NULL::VARCHAR AS operation, "
                "NULL::INTEGER AS attempts, NULL::TIMESTAMPTZ AS first_error_at, NULL::TIMESTAMPTZ AS last_error_at, "
                "NULL::VARCHAR AS last_error, NULL::TIMESTAMPTZ AS next_attempt_at, NULL::VARCHAR AS skip_reason "
                "WHERE false)")
    rows = con.execute(f"""
        SELECT l.record_key, l.status, a.operation, coalesce(a.attempts, l.attempts), a.first_error_at,
               a.last_error_at, coalesce(a.last_error, l.last_error), a.next_attempt_at, a.skip_reason
        FROM sync.ledger l LEFT JOIN {attempts} a USING (sync_name, record_key)
        WHERE l.sync_name = ? AND list_contains({list(LISTED)}, l.status)
        ORDER BY list_position({list(LISTED)}, l.status), l.record_key""", [sync_name]).fetchall()
    return [FailingRecord(*row) for row in rows]


def markdown_table(records: Sequence[FailingRecord], limit: int = 20) -> str:
    """The records as a markdown table for the asset's metadata in the UI."""
    if not records:
        return "none"
    lines = ["| record | status | operation | attempts | last error | next attempt |", "|---|---|---|---|---|---|"]
    for r in records[:limit]:
        error = (r.last_error or "").splitlines()[0][:160].replace("|", "/") if r.last_error else ""
        lines.append(f"| {r.key} | {r.status} | {r.operation or ''} | {r.attempts} | {error} | {r.next_attempt()} |")
    if len(records) > limit:
        lines.append(f"\n{len(records) - limit} more: `integration-pipelines sync errors NAME`")
    return "\n".join(lines)


def _source_keys(con: duckdb.DuckDBPyConnection, spec: SyncSpec, keys: Sequence[str]) -> set[str]:
    key = quote_ident(spec.key)
    load_sync_settings(con, spec)  # a source that reads `_sync_settings` (routes, start dates) finds them
    try:
        return {k for (k,) in con.execute(
            f"SELECT CAST(q.{key} AS VARCHAR) FROM ({spec.source_sql}) AS q "
            f"WHERE list_contains(?, CAST(q.{key} AS VARCHAR))", [list(keys)]).fetchall()}
    except duckdb.CatalogException:  # the model is not built yet: no record of it can be named
        return set()


def _close_incidents(data_dir: Path | None, sync_name: str, keys: Sequence[str], kinds: Sequence[str]) -> None:
    if data_dir is None:
        return
    from ..alerts import IncidentLog

    incidents = IncidentLog(data_dir / "alerts" / "incidents.json")
    for key in keys:
        for kind in kinds:
            incidents.close(f"sync:{sync_name}:record:{key}:{kind}")


def skip_records(con: duckdb.DuckDBPyConnection, spec: SyncSpec, keys: Sequence[str], reason: str = "",
                 *, by: str = "operator", data_dir: Path | None = None) -> list[str]:
    """Acknowledge records: never sent, listed as skipped. Refuses (changing nothing) keys it does not know and
    records already in the target."""
    ensure_ledger(con)
    keys = list(dict.fromkeys(keys))
    status = dict(con.execute("SELECT record_key, status FROM sync.ledger WHERE sync_name = ? "
                              "AND list_contains(?, record_key)", [spec.name, keys]).fetchall())
    in_source = _source_keys(con, spec, [k for k in keys if k not in status])
    problems = [f"{k!r} is neither in the sync's source nor in its ledger" for k in keys
                if k not in status and k not in in_source]
    problems += [f"{k!r} is already {status[k]} in {spec.target}: nothing to skip" for k in keys
                 if status.get(k) in ("synced", "linked", "deleted")]
    if problems:
        raise RecordsNotFoundError(f"sync {spec.name}: nothing was skipped: " + "; ".join(problems) + ".")
    now = datetime.now(UTC)
    con.execute("BEGIN TRANSACTION")
    for key in keys:
        con.execute("""INSERT INTO sync.ledger VALUES (?, ?, NULL, NULL, 'skipped', 0, NULL, NULL, ?)
                       ON CONFLICT (sync_name, record_key) DO UPDATE SET status = 'skipped',
                         last_run_id = excluded.last_run_id""", [spec.name, key, f"skip-by-{by}"])
        con.execute("""INSERT INTO sync.attempts (sync_name, record_key, skipped_at, skip_reason) VALUES (?, ?, ?, ?)
                       ON CONFLICT (sync_name, record_key) DO UPDATE SET skipped_at = excluded.skipped_at,
                         skip_reason = excluded.skip_reason, next_attempt_at = NULL""",
                    [spec.name, key, now, reason or None])
    con.execute("COMMIT")
    _close_incidents(data_dir, spec.name, keys, ("failing", "parked"))
    return keys


def retry_records(con: duckdb.DuckDBPyConnection, spec: SyncSpec, keys: Sequence[str] | None = None,
                  *, data_dir: Path | None = None) -> list[str]:
    """Failing, parked or skipped records (all of them when `keys` is None) start again: zero attempts, no
    backoff, so the next run sends them. Refuses (changing nothing) keys that are not failing."""
    ensure_ledger(con)
    status = dict(con.execute(f"SELECT record_key, status FROM sync.ledger WHERE sync_name = ? "
                              f"AND list_contains({list(LISTED)}, status)", [spec.name]).fetchall())
    if keys is None:
        chosen = sorted(k for k, s in status.items() if s in RETRYABLE)
    else:
        chosen = list(dict.fromkeys(keys))
        problems = [f"{k!r} is in doubt (a second send could create a second record; see docs/syncs.md, "
                    "'What the operator does with a record in doubt')" for k in chosen if status.get(k) == "in_doubt"]
        problems += [f"{k!r} is not failing, parked or skipped" for k in chosen if k not in status]
        if problems:
            raise RecordsNotFoundError(f"sync {spec.name}: nothing was reset: " + "; ".join(problems) + ".")
    if not chosen:
        return []
    con.execute("BEGIN TRANSACTION")
    con.execute("UPDATE sync.ledger SET status = 'failed', attempts = 0 WHERE sync_name = ? "
                "AND list_contains(?, record_key)", [spec.name, chosen])
    con.execute("""UPDATE sync.attempts SET attempts = 0, next_attempt_at = NULL, parked_at = NULL,
                   skipped_at = NULL, skip_reason = NULL WHERE sync_name = ? AND list_contains(?, record_key)""",
                [spec.name, chosen])
    con.execute("COMMIT")
    _close_incidents(data_dir, spec.name, chosen, ("parked",))
    return chosen


HISTORY_COLUMNS = ("run_id", "sync_name", "started_at", "finished_at", "dry_run", "created", "updated", "deleted",
                   "failed", "new_failures", "skipped", "parked", "backoff", "before_start", "in_doubt")


def run_history(con: duckdb.DuckDBPyConnection, sync_name: str | None = None, limit: int = 20
                ) -> list[dict[str, Any]]:
    """The most recent runs first (all syncs, or one)."""
    present = _columns(con, "runs")
    if not present:
        return []
    columns = ", ".join(c if c in present else f"0 AS {c}" for c in HISTORY_COLUMNS)
    cursor = con.execute(f"""SELECT {columns} FROM sync.runs
                             WHERE ? IS NULL OR sync_name = ? ORDER BY started_at DESC, sync_name LIMIT ?""",
                         [sync_name, sync_name, limit])
    return [dict(zip(HISTORY_COLUMNS, row, strict=True)) for row in cursor.fetchall()]
