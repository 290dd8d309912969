"""The one sync engine: diff the model against the ledger in SQL, send only what changed, record every outcome.

- Plan: inside DuckDB, so a million-row model diffs without a Python loop; only rows to send reach Python.
- Send: in the target writer's batch size, under its rate limit, with idempotency keys derived from the sync,
  the record key and the row hash, so a retried or re-run batch never creates a second record.
- A batch the target rejects is split and re-sent record by record, so one bad record fails alone; its error goes
  to `sync.errors` and the ledger marks it failed, so the next run retries it.
- Write-ahead: each batch is journaled in `sync.pending` (records, rows, idempotency key) before it is sent,
  and its outcome replaces the journal in the ledger, in one short transaction per batch (which also journals
  the next batch). A run killed between "the target accepted" and "the ledger recorded" leaves the batch in
  `sync.pending`; the next run first re-sends exactly that batch, with exactly that key, so the target replays
  its answer instead of creating the records again, even if the model changed meanwhile (a re-planned batch
  would have another composition or row hash, hence another key). A write whose answer was lost (retries
  exhausted, malformed answer) stays journaled the same way. Records with a journaled batch are left out of
  the plan until it is resolved.
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
from ..connectors.spec import Writer, render_template
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
    # set when the row returns after a mirror sync archived it: the re-create needs an idempotency key of its own,
    # or a target that remembers keys would replay the first create's answer (the archived record)
    revived_after: str | None = None


@dataclass
class SyncPlan:
    creates: list[Record] = field(default_factory=list)
    updates: list[Record] = field(default_factory=list)
    deletes: list[Record] = field(default_factory=list)
    unchanged: int = 0
    waiting: int = 0
    pending: int = 0  # records of batches an earlier run sent (or was about to send) without learning the outcome
    still_wanted: set[str] = field(default_factory=set)  # journaled keys the model would send now if not journaled

    def counts(self) -> dict[str, int]:
        counts = {"creates": len(self.creates), "updates": len(self.updates), "deletes": len(self.deletes),
                  "unchanged": self.unchanged, "waiting": self.waiting}
        if self.pending:  # only after a crash or a lost answer: the next run re-sends them first
            counts["pending"] = self.pending
        return counts


@dataclass
class SyncResult:
    plan: SyncPlan
    dry_run: bool
    created: int = 0
    updated: int = 0
    deleted: int = 0
    failed: int = 0
    resumed: int = 0  # records of interrupted batches re-sent as they were, before the plan
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
    # A blank key ('' or spaces) is refused like a null one: it is nearly always a missing value that a load or a
    # coalesce(x, '') turned into text, and the ledger would take it for one record across runs, so the next row
    # that happens to have a blank key would update (or link to) the first one's target record.
    bad = con.execute("SELECT count(*) FILTER (WHERE _key IS NULL OR trim(_key, ' \t\r\n') = ''), "
                      "count(*) - count(DISTINCT _key) FROM _sync_source").fetchone()
    if bad[0] or bad[1]:
        raise ValueError(f"sync {spec.name}: the source has {bad[0]} rows with a null or blank {spec.key!r} and "
                         f"{bad[1]} duplicate keys; the key must identify one record. Fix the sync's source_sql.")
    ready = " AND ".join(f"s.{quote_ident(c)} IS NOT NULL" for c in spec.required_columns) or "true"
    # a record a mirror sync archived is gone from the target's point of view: a row that comes back is created
    ledger_ext = "CASE WHEN l.status = 'deleted' THEN NULL ELSE l.external_id END"
    ext = f"coalesce({ledger_ext}, CAST(s.{quote_ident(spec.external_id_column)} AS VARCHAR))" \
        if spec.external_id_column else ledger_ext
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _sync_diff AS
        SELECT s._key, s._hash, {ext} AS _external_id, l.row_hash AS _ledger_hash, l.status AS _status,
               ({ready}) AS _ready, p.record_key IS NOT NULL AS _pending,
               CASE WHEN l.status = 'deleted' THEN strftime(l.last_synced_at, '%Y%m%dT%H%M%S.%f') END
                   AS _revived_after
        FROM _sync_source s
        LEFT JOIN sync.ledger l ON l.sync_name = '{spec.name}' AND l.record_key = s._key
        LEFT JOIN sync.pending p ON p.sync_name = '{spec.name}' AND p.record_key = s._key""")
    can_create = spec.mode in ("insert", "upsert", "mirror")
    can_update = spec.mode in ("update", "upsert", "mirror")
    wants_create = f"d._external_id IS NULL AND d._ready AND {can_create}"
    wants_update = (f"d._external_id IS NOT NULL AND d._ready AND {can_update} "
                    "AND (d._ledger_hash IS DISTINCT FROM d._hash OR d._status = 'failed')")
    # a journaled record is re-sent from its journal (same batch, same key), never re-planned beside it
    create_sql = f"{wants_create} AND NOT d._pending"
    update_sql = f"{wants_update} AND NOT d._pending"
    plan = SyncPlan()
    plan.waiting = con.execute("SELECT count(*) FROM _sync_diff WHERE NOT _ready AND NOT _pending").fetchone()[0]
    plan.pending = con.execute("SELECT count(*) FROM sync.pending WHERE sync_name = ?", [spec.name]).fetchone()[0]
    pending_in_source = con.execute("SELECT count(*) FROM _sync_diff WHERE _pending").fetchone()[0]
    if plan.pending:
        plan.still_wanted = {k for (k,) in con.execute(
            f"SELECT _key FROM _sync_diff d WHERE d._pending AND (({wants_create}) OR ({wants_update}))").fetchall()}
    for target, condition in ((plan.creates, create_sql), (plan.updates, update_sql)):
        for row in _rows(con, f"""SELECT d._external_id AS _external_id, d._revived_after AS _revived_after, s.*
                                  FROM _sync_diff d JOIN _sync_source s USING (_key) WHERE {condition}
                                  ORDER BY d._key"""):
            revived_after = row.pop("_revived_after")
            target.append(Record(row.pop("_key"), row.pop("_hash"), row.pop("_external_id"), row, revived_after))
    if spec.mode == "mirror":
        for row in _rows(con, f"""SELECT record_key, external_id, EXISTS (
                                      SELECT 1 FROM sync.pending p WHERE p.sync_name = l.sync_name
                                      AND p.record_key = l.record_key) AS journaled
                                  FROM sync.ledger l
                                  WHERE sync_name = '{spec.name}' AND external_id IS NOT NULL
                                  AND status <> 'deleted'
                                  AND NOT EXISTS (SELECT 1 FROM _sync_source s WHERE s._key = l.record_key)
                                  ORDER BY record_key"""):
            if row["journaled"]:
                plan.still_wanted.add(row["record_key"])
            else:
                plan.deletes.append(Record(row["record_key"], "", row["external_id"], {}))
    total = con.execute("SELECT count(*) FROM _sync_diff").fetchone()[0]
    plan.unchanged = total - plan.waiting - pending_in_source - len(plan.creates) - len(plan.updates)
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
        again = f":after:{r.revived_after}" if r.revived_after else ""
        return f"{spec.name}:{operation}:{r.key}:{r.row_hash[:12]}{again}"
    digest = hashlib.sha256("|".join(f"{r.key}:{r.row_hash}" + (f":{r.revived_after}" if r.revived_after else "")
                                     for r in records).encode()).hexdigest()
    return f"{spec.name}:{operation}:batch:{digest[:32]}"


def _chunks(records: list[Record], size: int) -> Iterator[list[Record]]:
    for start in range(0, len(records), size):
        yield records[start:start + size]


@dataclass
class _Batch:
    """One write request's worth of records, and the idempotency key it goes out with (every time)."""

    operation: str
    records: list[Record]
    key: str


def _writer_name(spec: SyncSpec, operation: str) -> str | None:
    return {"create": spec.create_writer, "update": spec.update_writer, "delete": spec.delete_writer}[operation]


def _pending_batches(con: duckdb.DuckDBPyConnection, spec: SyncSpec) -> list[_Batch]:
    """The journaled batches of `spec` whose outcome no run has recorded, in the order they were sent, each with
    its records in their original order (a replayed request must be the same request, element for element)."""
    ensure_ledger(con)
    batches: dict[tuple[str, str], _Batch] = {}
    for key, operation, idem, row_hash, external_id, row_json in con.execute(
            """SELECT record_key, operation, idempotency_key, row_hash, external_id, row_json FROM sync.pending
               WHERE sync_name = ? ORDER BY position, record_key""", [spec.name]).fetchall():
        batch = batches.setdefault((operation, idem), _Batch(operation, [], idem))
        batch.records.append(Record(key, row_hash or "", external_id, json.loads(row_json)))
    return list(batches.values())


def _journal(con: duckdb.DuckDBPyConnection, spec: SyncSpec, batch: _Batch, run_id: str, now: datetime) -> None:
    """Write-ahead: the batch as it will be sent, inside the caller's transaction; positions only grow, so
    journaled batches are re-sent in the order they were first sent, whichever run journaled them."""
    position = con.execute("SELECT coalesce(max(position) + 1, 0) FROM sync.pending").fetchone()[0]
    con.executemany(
        "INSERT OR REPLACE INTO sync.pending VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [[spec.name, r.key, batch.operation, batch.key, position + i, r.row_hash or None, r.external_id,
          json.dumps(_jsonable(r.row), default=str), run_id, now] for i, r in enumerate(batch.records)])


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
        interrupted = [] if dry_run else _pending_batches(con, spec)
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
    batches: list[tuple[Writer, _Batch]] = []
    for operation, writer_name, records in [] if dry_run else operations:
        if records and writer_name is not None:
            writer = system.writer(writer_name)
            size = min(spec.batch_size or writer.batch_size, writer.batch_size)
            batches += [(writer, _Batch(operation, chunk, idempotency_key(spec, operation, chunk)))
                        for chunk in _chunks(records, size)]
    resend: list[_Batch] = []
    for batch in interrupted:
        if any(r.key in plan.still_wanted for r in batch.records):
            resend.append(batch)
        else:  # the model no longer sends any of it (e.g. an Odoo order since extracted back): not sending cannot
            # duplicate anything, while sending could fail on the target's own uniqueness check
            _record(warehouse, spec, batch.operation, [], run_id, result, forget=batch)
            if log is not None:
                log.warning(f"sync {spec.name}: dropped an interrupted {batch.operation} batch of "
                            f"{len(batch.records)} record(s) that the model no longer sends")
    if not dry_run and (resend or batches):
        resolved = resolve_system(system, settings)
        with build_client(resolved, log=log, **(client_kwargs or {})) as client:
            system_values = {**resolved.values, **login_variables(client, resolved)}
            if resend and log is not None:
                log.warning(f"sync {spec.name}: re-sending {len(resend)} batch(es) that an earlier run sent without "
                            "recording the outcome, under their original idempotency keys")
            for batch in resend:  # first, exactly as they were sent: the target replays what it saved
                writer_name = _writer_name(spec, batch.operation)
                if writer_name is None:
                    raise ValueError(
                        f"sync {spec.name}: {len(batch.records)} record(s) of an interrupted {batch.operation} "
                        f"batch are journaled in sync.pending, but the sync has no {batch.operation}_writer any "
                        "more. Restore the writer, or delete those rows from sync.pending after checking the target.")
                outcomes = _send(client, resolved, system.writer(writer_name), spec, batch, system_values)
                _record(warehouse, spec, batch.operation, outcomes, run_id, result)
                result.resumed += len(batch.records)
            if batches:  # journal the first batch; each outcome's transaction journals the next one
                _record(warehouse, spec, batches[0][1].operation, [], run_id, result, journal_next=batches[0][1])
            for index, (writer, batch) in enumerate(batches):
                outcomes = _send(client, resolved, writer, spec, batch, system_values)
                following = batches[index + 1][1] if index + 1 < len(batches) else None
                _record(warehouse, spec, batch.operation, outcomes, run_id, result, journal_next=following)
    _log_run(warehouse, spec, run_id, started, result)
    attempted = len(plan.creates) + len(plan.updates) + len(plan.deletes) + result.resumed
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
    in_doubt_key: str | None = None  # the key of a request that may have been applied: re-send with this key


def _send(client, resolved, writer, spec: SyncSpec, batch: _Batch,  # type: ignore[no-untyped-def]
          system_values: dict[str, Any]) -> list[_Outcome]:
    records, operation = batch.records, batch.operation
    payloads = [payload_for(spec, r, operation, system_values) for r in records]
    try:
        path = {"external_id": records[0].external_id} if len(records) == 1 else None
        written = send_write(client, resolved, writer, payloads, idempotency_key=batch.key, path_variables=path)
    except AuthError:
        raise  # a credential problem fails every record alike: stop and say which variable to fix
    except ApiError as exc:
        if len(records) > 1:  # isolate the bad record(s): the rest of the batch still goes through
            return [o for r in records for o in _send(
                client, resolved, writer, spec, _Batch(operation, [r], idempotency_key(spec, operation, [r])),
                system_values)]
        return [_Outcome(records[0], None, str(exc), payloads[0])]
    except ConnectorError as exc:  # retries exhausted, malformed answer: every record of the batch failed, and
        # the target may still have applied the request, so it stays journaled under the key it went out with
        return [_Outcome(r, None, str(exc), p, in_doubt_key=batch.key)
                for r, p in zip(records, payloads, strict=True)]
    ids = written.external_ids
    if operation == "delete":
        return [_Outcome(r, r.external_id, None, p) for r, p in zip(records, payloads, strict=True)]
    if len(ids) != len(records):
        message = f"{resolved.system.title} answered {len(ids)} results for a batch of {len(records)}"
        return [_Outcome(r, None, message, p) for r, p in zip(records, payloads, strict=True)]
    return [_Outcome(r, i or r.external_id, None if (i or r.external_id) else "no id in the answer", p)
            for r, i, p in zip(records, ids, payloads, strict=True)]


_COUNTER = {"create": "created", "update": "updated", "delete": "deleted"}


def _record(warehouse: Warehouse, spec: SyncSpec, operation: str, outcomes: list[_Outcome], run_id: str,
            result: SyncResult, *, journal_next: _Batch | None = None, forget: _Batch | None = None) -> None:
    """One transaction: the batch's outcomes into the ledger (and errors), its journal rows resolved, and the
    next batch journaled, so a crash at any instant leaves either the journal or the ledger, never neither.
    `forget` drops a journaled batch without an outcome (the model no longer sends it)."""
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
                    counter = _COUNTER[operation]
                    setattr(result, counter, getattr(result, counter) + 1)
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
            settled = [o.record.key for o in outcomes if o.in_doubt_key is None]
            settled += [r.key for r in forget.records] if forget is not None else []
            if settled:
                con.execute("DELETE FROM sync.pending WHERE sync_name = ? AND list_contains(?, record_key)",
                            [spec.name, settled])
            for o in outcomes:
                if o.in_doubt_key is not None:  # after a split, the single record's own key went out last
                    con.execute("UPDATE sync.pending SET idempotency_key = ? WHERE sync_name = ? AND record_key = ?",
                                [o.in_doubt_key, spec.name, o.record.key])
            if journal_next is not None:
                _journal(con, spec, journal_next, run_id, now)
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
