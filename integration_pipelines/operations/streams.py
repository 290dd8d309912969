"""Stream operations an operator of dlt or Airbyte expects: run one stream now, reset its cursor, see its status.

- `extract SYSTEM/STREAM` reads one stream through `extraction.extract_stream`, as its Dagster asset does (one
  partition's window for a daily stream), outside Dagster.
- `stream reset SYSTEM/STREAM` deletes the stream's cursors in `ops.stream_state` (all its partitions), so the next
  read starts from the beginning; with `rows` also its raw table's rows. A dry run says what would go.
- `systems status` per system: last successful load per stream (`ops.extract_log`), rows per raw table, and what
  the warehouse does not record (failed attempts, schema changes) said plainly.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb

from ..connectors.errors import ConfigurationError
from ..connectors.registry import discover_systems
from ..connectors.runtime import resolve_system
from ..connectors.spec import Stream, System
from ..extraction import ExtractResult, extract_stream, raw_schema
from ..settings import Settings
from ..warehouse.duckdb import Warehouse, quote_ident

NOT_RECORDED_FAILURES = ("not recorded: ops.extract_log holds completed loads only (a failed read commits nothing); "
                         "failed runs are in the Dagster UI's Runs tab")


class UnknownStreamError(ValueError):
    """`SYSTEM/STREAM` names no stream; the message lists the ones there are."""


def find_stream(target: str, systems: list[System] | None = None) -> tuple[System, Stream]:
    systems = systems if systems is not None else discover_systems()
    name, _, stream_name = target.strip().partition("/")
    system = next((s for s in systems if s.name == name), None)
    if system is None:
        raise UnknownStreamError(f"There is no system named {name!r}. The systems are: "
                                 f"{', '.join(s.name for s in systems)}.")
    stream = next((s for s in system.streams if s.name == stream_name), None)
    if stream is None:
        raise UnknownStreamError(f"{system.name} has no stream {stream_name!r}; give SYSTEM/STREAM, one of: "
                                 f"{', '.join(f'{system.name}/{s.name}' for s in system.streams)}.")
    return system, stream


@dataclass
class ExtractRun:
    result: ExtractResult
    partition: str | None
    mode: str
    defaulted_partition: bool = False

    def as_json(self) -> dict[str, Any]:
        r, load = self.result, self.result.load
        return {"system": r.system, "stream": r.stream, "partition": self.partition, "mode": self.mode,
                "state_key": r.state_key, "table": load.table, "pages": r.pages, "requests": r.requests,
                "records": r.records, "new": load.inserted, "changed": load.updated, "unchanged": load.unchanged,
                "stale": load.stale, "total_rows": load.total_rows, "new_columns": load.new_columns,
                "incremental_since": r.incremental_since.isoformat() if r.incremental_since else None,
                "cursor": r.cursor}


def run_extract(system: System, stream: Stream, settings: Settings, *, partition: date | None = None,
                full_refresh: bool = False, log: Any = None) -> ExtractRun:
    if not settings.system_enabled(system.name):
        raise ConfigurationError(f"{system.title} is disabled (IP_ENABLED_SYSTEMS or {system.env_prefix}_ENABLED); "
                                 "enable it to extract from it.")
    defaulted = False
    if stream.partitioned == "daily":
        if partition is None:
            partition, defaulted = datetime.now(UTC).date() - timedelta(days=1), True
        start = datetime(partition.year, partition.month, partition.day, tzinfo=UTC)
        window: tuple[datetime | None, datetime | None] = (start, start + timedelta(days=1))
        key: str | None = partition.isoformat()
    else:
        if partition is not None:
            raise ConfigurationError(f"{system.name}/{stream.name} is not partitioned: drop --partition (it reads "
                                     "everything, or what changed since its cursor).")
        window, key = (None, None), None
    resolved = resolve_system(system, settings)
    warehouse = Warehouse(settings.warehouse_database, lock_timeout=settings.warehouse_lock_timeout_seconds, log=log)
    result = extract_stream(resolved=resolved, stream=stream, warehouse=warehouse, settings=settings,
                            run_id=f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}",
                            window_start=window[0], window_end=window[1], partition_key=key,
                            full_refresh=full_refresh, log=log)
    return ExtractRun(result, key, resolved.mode, defaulted)


# -- reset ---------------------------------------------------------------------------------------------------
@dataclass
class ResetPlan:
    system: str
    stream: str
    table: str
    cursors: list[dict[str, Any]] = field(default_factory=list)
    rows: int | None = None  # raw rows that go (None: rows are kept)
    table_exists: bool = False
    done: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"system": self.system, "stream": self.stream, "table": self.table, "cursors": self.cursors,
                "rows": self.rows, "table_exists": self.table_exists, "done": self.done}


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND "
                            "table_name = ? AND table_catalog = current_database()", [schema, table]).fetchone()[0])


def reset_stream(con: duckdb.DuckDBPyConnection, system: System, stream: Stream, *, rows: bool,
                 dry_run: bool) -> ResetPlan:
    schema = raw_schema(system.name)
    plan = ResetPlan(system.name, stream.name, f"{schema}.{stream.name}")
    if _exists(con, "ops", "stream_state"):
        for state_key, cursor, updated_at, run_id in con.execute(
                "SELECT state_key, cursor, updated_at, run_id FROM ops.stream_state WHERE system = ? AND stream = ? "
                "ORDER BY state_key", [system.name, stream.name]).fetchall():
            plan.cursors.append({"state_key": state_key, "cursor": cursor,
                                 "updated_at": updated_at.isoformat() if updated_at else None, "run_id": run_id})
    plan.table_exists = _exists(con, schema, stream.name)
    target = f"{quote_ident(schema)}.{quote_ident(stream.name)}"
    if rows:
        plan.rows = int(con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]) if plan.table_exists else 0
    if dry_run:
        return plan
    con.execute("BEGIN")
    try:
        if plan.cursors:
            con.execute("DELETE FROM ops.stream_state WHERE system = ? AND stream = ?", [system.name, stream.name])
        if rows and plan.table_exists:
            con.execute(f"DELETE FROM {target}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    plan.done = True
    return plan


# -- status --------------------------------------------------------------------------------------------------
def systems_status(con: duckdb.DuckDBPyConnection, systems: list[System], settings: Settings
                   ) -> list[dict[str, Any]]:
    have_log = _exists(con, "ops", "extract_log")
    have_state = _exists(con, "ops", "stream_state")
    have_changes = _exists(con, "ops", "schema_changes")
    out: list[dict[str, Any]] = []
    for system in systems:
        try:
            mode = resolve_system(system, settings).mode
        except ConfigurationError as exc:
            mode = f"misconfigured: {exc}"
        streams = []
        for stream in system.streams:
            schema = raw_schema(system.name)
            entry: dict[str, Any] = {"stream": stream.name, "table": f"{schema}.{stream.name}", "rows": None,
                                     "last_success": None, "last_run_id": None, "last_records": None,
                                     "last_new": None, "last_changed": None, "loads": 0, "cursors": 0}
            if _exists(con, schema, stream.name):
                entry["rows"] = int(con.execute(
                    f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(stream.name)}").fetchone()[0])
            if have_log:
                row = con.execute(
                    "SELECT finished_at, run_id, records, inserted, updated, count(*) OVER () FROM ops.extract_log "
                    "WHERE system = ? AND stream = ? ORDER BY finished_at DESC LIMIT 1",
                    [system.name, stream.name]).fetchone()
                if row:
                    entry |= {"last_success": row[0].astimezone(UTC).isoformat() if row[0] else None,
                              "last_run_id": row[1], "last_records": row[2], "last_new": row[3],
                              "last_changed": row[4], "loads": int(row[5])}
            if have_state:
                entry["cursors"] = int(con.execute(
                    "SELECT count(*) FROM ops.stream_state WHERE system = ? AND stream = ?",
                    [system.name, stream.name]).fetchone()[0])
            entry["schema_changes"] = [] if not have_changes else [
                {"column": c, "type": t, "added_at": a.astimezone(UTC).isoformat(), "run_id": r}
                for c, t, a, r in con.execute(
                    "SELECT column_name, column_type, added_at, run_id FROM ops.schema_changes "
                    "WHERE table_name = ? ORDER BY added_at, column_name", [entry["table"]]).fetchall()]
            streams.append(entry)
        out.append({
            "system": system.name, "mode": mode, "enabled": settings.system_enabled(system.name),
            "streams": streams,
            "never_extracted": [s["stream"] for s in streams if s["last_success"] is None],
            "failing_streams": None, "failing_streams_note": NOT_RECORDED_FAILURES,
            # the columns each stream's latest load added: the schema change since the previous run
            "new_columns": [f"{s['stream']}.{c['column']}" for s in streams for c in s["schema_changes"]
                            if c["run_id"] is not None and c["run_id"] == s["last_run_id"]],
        })
    return out
