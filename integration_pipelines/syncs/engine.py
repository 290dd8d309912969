"""The one sync engine: diff the model against the ledger in SQL, send only what changed, record every outcome.

- Plan: inside DuckDB, so a million-row model diffs without a Python loop; only rows to send reach Python.
- Send: in the target writer's batch size, under its rate limit, with idempotency keys derived from the sync,
  the record key and the row hash, so a retried or re-run batch never creates a second record.
- A batch the target rejects is split and re-sent record by record, so one bad record fails alone; its error goes
  to `sync.errors` and the ledger marks it failed, so the next run retries it.
- The ledger is written after every batch, in its own short transaction: a crash loses at most one batch of
  bookkeeping, and the re-send of that batch carries the same idempotency keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from ..connectors.errors import ApiError, AuthError, ConnectorError
from ..connectors.http import LogSink
from ..connectors.reader import login_variables
from ..connectors.redaction import redact
from ..connectors.registry import get_system
from ..connectors.runtime import build_client, resolve_system
from ..connectors.spec import render_template
from ..connectors.writer import send_write
from ..settings import Settings
from ..warehouse.duckdb import Warehouse, quote_ident
from .ledger import ensure_ledger
from .spec import SyncSpec

SAMPLE_SIZE = 5


class SyncFailedError(Exception):
    """More records failed than the sync's error threshold allows."""


class SyncSourceMissingError(Exception):
    """The model a sync reads has not been built yet."""


@dataclass
class Record:
    key: str
    row_hash: str
    external_id: str | None
    row: dict[str, Any]


@dataclass
class SyncPlan:
    creates: list[Record] = field(default_factory=list)
    updates: list[Record] = field(default_factory=list)
    deletes: list[Record] = field(default_factory=list)
    unchanged: int = 0
    waiting: int = 0

    def counts(self) -> dict[str, int]:
        return {"creates": len(self.creates), "updates": len(self.updates), "deletes": len(self.deletes),
                "unchanged": self.unchanged, "waiting": self.waiting}


@dataclass
class SyncResult:
    plan: SyncPlan
    dry_run: bool
    created: int = 0
    updated: int = 0
    deleted: int = 0
    failed: int = 0
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (key, operation, message)
    samples: list[dict[str, Any]] = field(default_factory=list)


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def plan_sync(con: duckdb.DuckDBPyConnection, spec: SyncSpec) -> SyncPlan:
    """Compare the source model with the ledger; everything heavy happens in SQL."""
    ensure_ledger(con)
    key = quote_ident(spec.key)
    try:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _sync_source AS
            SELECT CAST(q.{key} AS VARCHAR) AS _key, md5(to_json(q)::VARCHAR) AS _hash, q.*
            FROM ({spec.source_sql}) AS q""")
    except duckdb.CatalogException as exc:
        needs = ", ".join("/".join(k) for k in spec.source_assets) or "its source models"
        raise SyncSourceMissingError(
            f"sync {spec.name} reads a table that does not exist yet ({str(exc).splitlines()[0]}). "
            f"Materialize {needs} first (the `core` group in the UI).") from exc
    bad = con.execute("SELECT count(*) FILTER (WHERE _key IS NULL), count(*) - count(DISTINCT _key) "
                      "FROM _sync_source").fetchone()
    if bad[0] or bad[1]:
        raise ValueError(f"sync {spec.name}: the source has {bad[0]} rows with a null {spec.key!r} and {bad[1]} "
                         "duplicate keys; the key must identify one record. Fix the sync's source_sql.")
    ready = " AND ".join(f"s.{quote_ident(c)} IS NOT NULL" for c in spec.required_columns) or "true"
    ext = f"coalesce(l.external_id, CAST(s.{quote_ident(spec.external_id_column)} AS VARCHAR))" \
        if spec.external_id_column else "l.external_id"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _sync_diff AS
        SELECT s._key, s._hash, {ext} AS _external_id, l.row_hash AS _ledger_hash, l.status AS _status,
               ({ready}) AS _ready
        FROM _sync_source s
        LEFT JOIN sync.ledger l ON l.sync_name = '{spec.name}' AND l.record_key = s._key""")
    can_create = spec.mode in ("insert", "upsert", "mirror")
    can_update = spec.mode in ("update", "upsert", "mirror")
    create_sql = f"d._external_id IS NULL AND d._ready AND {can_create}"
    update_sql = (f"d._external_id IS NOT NULL AND d._ready AND {can_update} "
                  "AND (d._ledger_hash IS DISTINCT FROM d._hash OR d._status = 'failed')")
    plan = SyncPlan()
    plan.waiting = con.execute("SELECT count(*) FROM _sync_diff WHERE NOT _ready").fetchone()[0]
    for target, condition in ((plan.creates, create_sql), (plan.updates, update_sql)):
        for row in _rows(con, f"""SELECT d._external_id AS _external_id, s.* FROM _sync_diff d
                                  JOIN _sync_source s USING (_key) WHERE {condition} ORDER BY d._key"""):
            target.append(Record(row.pop("_key"), row.pop("_hash"), row.pop("_external_id"), row))
    if spec.mode == "mirror":
        for row in _rows(con, f"""SELECT record_key, external_id FROM sync.ledger l
                                  WHERE sync_name = '{spec.name}' AND external_id IS NOT NULL
                                  AND status <> 'deleted'
                                  AND NOT EXISTS (SELECT 1 FROM _sync_source s WHERE s._key = l.record_key)
                                  ORDER BY record_key"""):
            plan.deletes.append(Record(row["record_key"], "", row["external_id"], {}))
    total = con.execute("SELECT count(*) FROM _sync_diff").fetchone()[0]
    plan.unchanged = total - plan.waiting - len(plan.creates) - len(plan.updates)
    return plan


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "as_tuple"):  # Decimal
        return float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def payload_for(spec: SyncSpec, record: Record, operation: str, system_values: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    """Fill the payload from the row, plus the target's values and login variables (JSON-RPC payloads carry
    the database, uid and key); row columns win over system values of the same name."""
    variables = {**(system_values or {}), **_jsonable(record.row), "external_id": record.external_id,
                 "record_key": record.key}
    if operation == "delete":  # the row has left the model: only the key and the target's id are known
        template = spec.delete_payload or {}
    else:
        template = (spec.update_payload if operation == "update" else None) or spec.payload
    return render_template(template, variables, where=f"sync {spec.name} payload")


def idempotency_key(spec: SyncSpec, operation: str, records: Sequence[Record]) -> str:
    """Same sync, operation, keys and content → same key, so the target recognises a re-sent batch."""
    if len(records) == 1:
        r = records[0]
        return f"{spec.name}:{operation}:{r.key}:{r.row_hash[:12]}"
    digest = hashlib.sha256("|".join(f"{r.key}:{r.row_hash}" for r in records).encode()).hexdigest()
    return f"{spec.name}:{operation}:batch:{digest[:32]}"


def _chunks(records: list[Record], size: int) -> Iterator[list[Record]]:
    for start in range(0, len(records), size):
        yield records[start:start + size]


def run_sync(
    spec: SyncSpec,
    warehouse: Warehouse,
    settings: Settings,
    *,
    run_id: str,
    dry_run: bool = False,
    log: LogSink | None = None,
    client_kwargs: dict[str, Any] | None = None,
) -> SyncResult:
    started = datetime.now(UTC)
    with warehouse.connect() as con:
        plan = plan_sync(con, spec)
    result = SyncResult(plan=plan, dry_run=dry_run)
    operations = [("create", spec.create_writer, plan.creates), ("update", spec.update_writer, plan.updates),
                  ("delete", spec.delete_writer, plan.deletes)]
    system = get_system(spec.target)
    # Samples never log in and never show a credential: system values appear as <placeholders>.
    placeholders = {k: f"<{k}>" for k in [*system.values, *(system.login.variables if system.login else {})]}
    for operation, _, records in operations:
        for record in records[:SAMPLE_SIZE]:
            result.samples.append({"operation": operation, "key": record.key,
                                   "payload": payload_for(spec, record, operation, placeholders)})
    if not dry_run and any(records for _, _, records in operations):
        resolved = resolve_system(system, settings)
        with build_client(resolved, log=log, **(client_kwargs or {})) as client:
            system_values = {**resolved.values, **login_variables(client, resolved)}
            for operation, writer_name, records in operations:
                if not records or writer_name is None:
                    continue
                writer = system.writer(writer_name)
                size = min(spec.batch_size or writer.batch_size, writer.batch_size)
                for batch in _chunks(records, size):
                    outcomes = _send(client, resolved, writer, spec, operation, batch, system_values)
                    _record(warehouse, spec, operation, outcomes, run_id, result)
    _log_run(warehouse, spec, run_id, started, result)
    attempted = len(plan.creates) + len(plan.updates) + len(plan.deletes)
    if not dry_run and attempted and result.failed / attempted > spec.error_threshold:
        first = result.errors[0][2] if result.errors else ""
        raise SyncFailedError(
            f"sync {spec.name}: {result.failed} of {attempted} records failed (threshold "
            f"{spec.error_threshold:.0%}). First error: {first}. Details in sync.errors; the failed records "
            "are retried on the next run.")
    return result


@dataclass
class _Outcome:
    record: Record
    external_id: str | None
    error: str | None
    payload: dict[str, Any]


def _send(client, resolved, writer, spec: SyncSpec, operation: str, batch: list[Record],  # type: ignore[no-untyped-def]
          system_values: dict[str, Any]) -> list[_Outcome]:
    payloads = [payload_for(spec, r, operation, system_values) for r in batch]
    try:
        key = idempotency_key(spec, operation, batch)
        path = {"external_id": batch[0].external_id} if len(batch) == 1 else None
        written = send_write(client, resolved, writer, payloads, idempotency_key=key, path_variables=path)
    except AuthError:
        raise  # a credential problem fails every record alike: stop and say which variable to fix
    except ApiError as exc:
        if len(batch) > 1:  # isolate the bad record(s): the rest of the batch still goes through
            return [o for r in batch for o in _send(client, resolved, writer, spec, operation, [r], system_values)]
        return [_Outcome(batch[0], None, str(exc), payloads[0])]
    except ConnectorError as exc:  # retries exhausted, malformed answer: every record of the batch failed
        return [_Outcome(r, None, str(exc), p) for r, p in zip(batch, payloads, strict=True)]
    ids = written.external_ids
    if operation == "delete":
        return [_Outcome(r, r.external_id, None, p) for r, p in zip(batch, payloads, strict=True)]
    if len(ids) != len(batch):
        message = f"{resolved.system.title} answered {len(ids)} results for a batch of {len(batch)}"
        return [_Outcome(r, None, message, p) for r, p in zip(batch, payloads, strict=True)]
    return [_Outcome(r, i or r.external_id, None if (i or r.external_id) else "no id in the answer", p)
            for r, i, p in zip(batch, ids, payloads, strict=True)]


def _record(warehouse: Warehouse, spec: SyncSpec, operation: str, outcomes: list[_Outcome], run_id: str,
            result: SyncResult) -> None:
    now = datetime.now(UTC)
    with warehouse.connect() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            ensure_ledger(con)
            for o in outcomes:
                if o.error is None:
                    status = "deleted" if operation == "delete" else "synced"
                    row_hash = o.record.row_hash or None
                    con.execute("""INSERT INTO sync.ledger VALUES (?, ?, ?, ?, ?, 0, NULL, ?, ?)
                        ON CONFLICT (sync_name, record_key) DO UPDATE SET
                          row_hash = coalesce(excluded.row_hash, sync.ledger.row_hash),
                          external_id = excluded.external_id, status = excluded.status, attempts = 0,
                          last_error = NULL, last_synced_at = excluded.last_synced_at,
                          last_run_id = excluded.last_run_id""",
                                [spec.name, o.record.key, row_hash, o.external_id, status, now, run_id])
                    setattr(result, {"create": "created", "update": "updated", "delete": "deleted"}[operation],
                            getattr(result, {"create": "created", "update": "updated",
                                             "delete": "deleted"}[operation]) + 1)
                else:
                    message = redact(o.error)[:2000]
                    con.execute("""INSERT INTO sync.ledger VALUES (?, ?, NULL, ?, 'failed', 1, ?, NULL, ?)
                        ON CONFLICT (sync_name, record_key) DO UPDATE SET status = 'failed',
                          attempts = sync.ledger.attempts + 1, last_error = excluded.last_error,
                          last_run_id = excluded.last_run_id""",
                                [spec.name, o.record.key, o.record.external_id, message, run_id])
                    con.execute("INSERT INTO sync.errors VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [spec.name, o.record.key, run_id, now, operation, message,
                                 redact(json.dumps(o.payload, default=str))[:500]])
                    result.failed += 1
                    result.errors.append((o.record.key, operation, message))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def _log_run(warehouse: Warehouse, spec: SyncSpec, run_id: str, started: datetime, result: SyncResult) -> None:
    plan = result.plan
    with warehouse.connect() as con:
        ensure_ledger(con)
        con.execute("INSERT INTO sync.runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [run_id, spec.name, spec.target, started, datetime.now(UTC), result.dry_run,
                     len(plan.creates), len(plan.updates), len(plan.deletes), plan.unchanged, plan.waiting,
                     result.created, result.updated, result.deleted, result.failed])
