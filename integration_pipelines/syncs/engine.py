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
- Creates without an idempotency key (`Writer.replay_safe` false: Odoo JSON-RPC `create`, an email) are never
  repeated once they may have reached the target, neither by the HTTP client nor from the journal: the writer's
  lookup finds the record (linked) or proves it absent (sent again), and without a lookup the record is held
  in doubt (ledger `in_doubt`, sync.errors) for an operator. See docs/syncs.md.
- One dispatch: a sync's writer may be a REST `Writer` or a SOAP `SoapWriter` of its target
  (`connectors/writer.py`); both go through the same plan, journal, ledger and error handling. A SOAP writer is keyed
  by the business key its target deduplicates on, so it is re-sent like a keyed write, never held in doubt.
- Match before create: in insert mode a row whose target id comes from the source (`external_id_column`) and
  that the ledger does not know is linked (ledger `linked`), never created.
- Failed records are something an operator handles, not something every run trips over: a record the target
  refuses (a 4xx for that record) is recorded in `sync.attempts` (attempts, first/last error time, last error, next
  attempt) and sent again only after an exponential backoff; after `IP_SYNC_MAX_ATTEMPTS` refusals of the same
  version it is `parked`, and an operator may `skip` it (acknowledged, never sent) or `retry` it. A run fails only
  for systemic trouble: a refused credential, a target that does not answer, or more NEW failures than the spec's
  `error_threshold`; a record that keeps failing is reported (metadata, `sync errors`), and alerted once when it
  first fails and once when it is parked, never once per run.
- Start: a sync with a `start_column` acts only on records at or after its start (`IP_SYNC_<NAME>_START`,
  `IP_SYNC_START`, else the moment it first ran against this warehouse, `sync.starts`); the rest are counted as
  `before_start` and never sent. Records the target already holds (ledger id) are still updated.
- Selected records (`keys`, `sync run NAME --key K`): the same plan, lock, ledger and sends, over the selected
  source rows only; nothing else is planned, sent or marked, and journaled batches wait for a full run (re-sending
  part of one would change its composition, hence its idempotency key).
- Old values: the ledger keeps a hash of the row it last pushed, not the row, and a plan reads nothing from the
  target, so an update's per-field description has the new values and says the old ones are not known.
"""

from __future__ import annotations

import hashlib
import json
import os
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from ..connectors.errors import ApiError, AuthError, ConnectorError
from ..connectors.http import LogSink, OutcomeUnknownError
from ..connectors.reader import login_variables
from ..connectors.redaction import redact
from ..connectors.registry import get_system
from ..connectors.runtime import resolve_system
from ..connectors.spec import System, render_template
from ..connectors.writer import (
    AnyWriter,
    batch_size,
    dispatch_write,
    find_writer,
    has_lookup,
    http_of,
    look_up_any,
    replay_safe,
    write_client,
)
from ..locks import exclusive, lock_path
from ..provenance import account_of, check_write_target
from ..settings import Settings
from ..warehouse.duckdb import Warehouse, quote_ident
from .ledger import ensure_ledger
from .settings import SyncSettings
from .spec import SyncSpec

SYNC_LOCK_SECONDS = 600.0  # waiting longer than this for the same sync elsewhere fails this run readably


@dataclass(frozen=True)
class _Target:
    """Where this run's writes go, as the ledger and the journal record it: system, mode, account (never a
    secret: `provenance.account_of`)."""

    system: str
    mode: str
    account: str

SAMPLE_SIZE = 5


class SyncFailedError(Exception):
    """The sync could not do its work: more NEW failures than its error threshold allows, or the target did not
    answer at all. Records already known to fail never raise it again (they are reported and retried with
    backoff, then parked)."""


class SyncSourceMissingError(Exception):
    """The model a sync reads has not been built yet."""


class UnknownRecordKeysError(ValueError):
    """Keys selected for a run (`--key`) that are neither in the sync's source nor in its ledger: a typo or a
    record of another sync, so nothing is planned or sent rather than a run that quietly does nothing."""


OLD_VALUES_UNKNOWN = ("unknown: the ledger keeps only a hash of the row last pushed, and a plan reads nothing "
                      "from the target")


@dataclass(frozen=True)
class LastPush:
    """What the ledger knows about an update's record: why it is sent again, never what the target holds."""

    status: str | None  # ledger status; None: this sync never pushed it (the target id comes from the source)
    changed: bool  # the model row's hash differs from the one last pushed
    pushed_at: datetime | None
    run_id: str | None

    def why(self) -> str:
        if self.status is None:
            return "never pushed by this sync (the target's id comes from the source)"
        if self.changed:
            return "the model row changed since it was last pushed"
        return f"sent again: its last attempt ended {self.status}"


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
    # records that already exist in the target (the source's external_id_column) and that the ledger does not know:
    # recorded with that id (status `linked`) instead of being created
    linked: list[Record] = field(default_factory=list)
    # creates an unkeyed target may or may not have applied (ledger status `in_doubt`): never re-sent; looked up
    # again each run when the writer has a lookup, otherwise held for an operator (docs/syncs.md)
    in_doubt: list[Record] = field(default_factory=list)
    unchanged: int = 0
    waiting: int = 0
    pending: int = 0  # records of batches an earlier run sent (or was about to send) without learning the outcome
    still_wanted: set[str] = field(default_factory=set)  # journaled keys the model would send now if not journaled
    before_start: int = 0  # source records older than the sync's start (start_column < start): never sent
    backoff: int = 0  # refused records waiting for their next attempt time (sync.attempts.next_attempt_at)
    parked: int = 0  # refused IP_SYNC_MAX_ATTEMPTS times: not sent until an operator runs `sync retry`
    skipped: int = 0  # acknowledged by an operator (`sync skip`): never sent, not a failure
    start: datetime | None = None  # the start the plan applied (None: the sync has no start_column)
    last_push: dict[str, LastPush] = field(default_factory=dict)  # per update's key: why it is sent again

    def counts(self) -> dict[str, int]:
        counts = {"creates": len(self.creates), "updates": len(self.updates), "deletes": len(self.deletes),
                  "unchanged": self.unchanged, "waiting": self.waiting}
        if self.linked:
            counts["linked"] = len(self.linked)
        if self.in_doubt:  # someone has to look: reported whenever there are any
            counts["in_doubt"] = len(self.in_doubt)
        if self.pending:  # only after a crash or a lost answer: the next run re-sends them first
            counts["pending"] = self.pending
        for name in ("before_start", "backoff", "parked", "skipped"):  # held back: reported whenever there are any
            if getattr(self, name):
                counts[name] = getattr(self, name)
        return counts


@dataclass
class SyncResult:
    plan: SyncPlan
    dry_run: bool
    created: int = 0
    updated: int = 0
    deleted: int = 0
    linked: int = 0  # records found in the target (source id, or a lookup after a lost answer) and recorded
    in_doubt: int = 0  # creates recorded in doubt by this run (records held in doubt after it: sync.runs.in_doubt)
    failed: int = 0
    resumed: int = 0  # records of interrupted batches re-sent as they were, before the plan
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (key, operation, message)
    samples: list[dict[str, Any]] = field(default_factory=list)
    # refusals of records that were not failing before (or of a changed version): these alone can fail the run
    new_failures: list[tuple[str, str, str]] = field(default_factory=list)
    transient: int = 0  # failures without an answer (target unreachable, 5xx after retries): systemic
    parked_now: list[tuple[str, str, str]] = field(default_factory=list)  # parked by this run (attempts used up)
    recovered: list[str] = field(default_factory=list)  # records that had failed before and went through now
    policy: SyncSettings | None = field(default=None, repr=False)  # attempt limit and backoff (default: env)
    start_source: str = ""  # where plan.start came from: the variable, or "first run"


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def plan_sync(con: duckdb.DuckDBPyConnection, spec: SyncSpec, *, start: datetime | None = None,
              now: datetime | None = None, keys: Sequence[str] | None = None) -> SyncPlan:
    """Compare the source model with the ledger; everything heavy happens in SQL. `start`: records whose
    `start_column` is older are left out (`before_start`); `now`: the moment refused records' backoff is compared
    with (default: the current time); `keys`: plan only these records (the source is still checked whole, so a
    selected run refuses a broken key column exactly as a full run does)."""
    ensure_ledger(con)
    load_sync_settings(con, spec)
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
    if keys is not None:
        con.execute("DELETE FROM _sync_source WHERE NOT list_contains(?, _key)", [list(keys)])
    now = now or datetime.now(UTC)
    _diff_table(con, spec, start if spec.start_column else None)
    can_create = spec.mode in ("insert", "upsert", "mirror")
    can_update = spec.mode in ("update", "upsert", "mirror")
    # a record the source says exists in the target (its id from external_id_column) while the ledger knows none,
    # in a mode that cannot update it: linked (recorded, never sent), so it is never created later. Like every
    # other row it waits while a required column is null.
    # never acted on and older than the sync's start: left alone for good (a record the target holds is still
    # updated, and a journaled or in-doubt one is still resolved)
    before_sql = ("d._before_start AND NOT d._pending AND d._ledger_ext IS NULL "
                  "AND d._status IS DISTINCT FROM 'in_doubt'")
    linked_sql = (f"d._ready AND NOT d._pending AND d._ledger_ext IS NULL AND d._column_ext IS NOT NULL "
                  f"AND NOT {can_update} AND NOT ({before_sql})")
    # held back by its failure history: skipped by a person, parked, or waiting for its backoff. Parking and
    # backoff hold the version that failed; a changed row is a new version and is sent at once.
    same_version = "d._failed_hash IS NOT DISTINCT FROM d._hash"
    held_back = {
        "skipped": "d._status = 'skipped'",
        "parked": f"d._status = 'parked' AND {same_version}",
        "backoff": f"d._status = 'failed' AND {same_version} AND d._next_attempt_at > "
                   f"TIMESTAMPTZ '{now.astimezone(UTC).isoformat()}'",
    }
    blocked = "coalesce(" + " OR ".join(f"({c})" for c in held_back.values()) + ", false)"  # no ledger row: NULL
    # a create that may or may not have reached an unkeyed target: held for a lookup or an operator, never re-sent
    held_sql = "NOT d._pending AND d._status IS NOT DISTINCT FROM 'in_doubt' AND d._external_id IS NULL"
    wants_create = f"d._external_id IS NULL AND d._ready AND {can_create} AND d._status IS DISTINCT FROM 'in_doubt'"
    wants_update = (f"d._external_id IS NOT NULL AND d._ready AND {can_update} "
                    "AND (d._ledger_hash IS DISTINCT FROM d._hash OR d._status IN ('failed', 'in_doubt', 'parked'))")
    # a journaled record is re-sent from its journal (same batch, same key), never re-planned beside it
    sendable = f"NOT d._pending AND NOT ({before_sql})"
    create_sql = f"{wants_create} AND {sendable} AND NOT ({blocked})"
    update_sql = f"{wants_update} AND {sendable} AND NOT ({blocked})"
    plan = SyncPlan(start=start if spec.start_column else None)
    plan.waiting = con.execute(f"SELECT count(*) FROM _sync_diff d WHERE NOT d._ready AND NOT d._pending "
                               f"AND NOT ({held_sql}) AND NOT ({before_sql})").fetchone()[0]
    plan.before_start = con.execute(f"SELECT count(*) FROM _sync_diff d WHERE {before_sql}").fetchone()[0]
    for name, condition in held_back.items():
        setattr(plan, name, con.execute(
            f"SELECT count(*) FROM _sync_diff d WHERE (({wants_create}) OR ({wants_update})) AND {sendable} "
            f"AND ({condition})").fetchone()[0])
    selected = "" if keys is None else " AND list_contains(?, record_key)"
    plan.pending = con.execute(f"SELECT count(*) FROM sync.pending WHERE sync_name = ?{selected}",
                               [spec.name, *([] if keys is None else [list(keys)])]).fetchone()[0]
    pending_in_source = con.execute("SELECT count(*) FROM _sync_diff WHERE _pending").fetchone()[0]
    if plan.pending:
        plan.still_wanted = {k for (k,) in con.execute(
            f"SELECT _key FROM _sync_diff d WHERE d._pending AND (({wants_create}) OR ({wants_update}))").fetchall()}
    for target, condition in ((plan.creates, create_sql), (plan.updates, update_sql), (plan.linked, linked_sql),
                              (plan.in_doubt, held_sql)):
        for row in _rows(con, f"""SELECT d._external_id AS _external_id, d._revived_after AS _revived_after, s.*
                                  FROM _sync_diff d JOIN _sync_source s USING (_key) WHERE {condition}
                                  ORDER BY d._key"""):
            revived_after = row.pop("_revived_after")
            target.append(Record(row.pop("_key"), row.pop("_hash"), row.pop("_external_id"), row, revived_after))
    if plan.updates:
        plan.last_push = {key: LastPush(*rest) for key, *rest in con.execute(f"""
            SELECT d._key, d._status, d._ledger_hash IS DISTINCT FROM d._hash, l.last_synced_at, l.last_run_id
            FROM _sync_diff d LEFT JOIN sync.ledger l ON l.sync_name = ? AND l.record_key = d._key
            WHERE {update_sql}""", [spec.name]).fetchall()}
    if spec.mode == "mirror":
        for row in _rows(con, f"""SELECT record_key, external_id, EXISTS (
                                      SELECT 1 FROM sync.pending p WHERE p.sync_name = l.sync_name
                                      AND p.record_key = l.record_key) AS journaled
                                  FROM sync.ledger l
                                  WHERE sync_name = '{spec.name}' AND external_id IS NOT NULL
                                  AND status <> 'deleted'
                                  AND NOT EXISTS (SELECT 1 FROM _sync_source s WHERE s._key = l.record_key)
                                  ORDER BY record_key"""):
            if keys is not None and row["record_key"] not in keys:  # not selected: left alone
                continue
            if row["journaled"]:
                plan.still_wanted.add(row["record_key"])
            else:
                plan.deletes.append(Record(row["record_key"], "", row["external_id"], {}))
    total = con.execute("SELECT count(*) FROM _sync_diff").fetchone()[0]
    plan.unchanged = (total - plan.waiting - pending_in_source - len(plan.creates) - len(plan.updates)
                      - len(plan.linked) - len(plan.in_doubt) - plan.before_start - plan.backoff - plan.parked
                      - plan.skipped)
    return plan


def unknown_keys(con: duckdb.DuckDBPyConnection, spec: SyncSpec, keys: Sequence[str]) -> list[str]:
    """The selected keys that are neither in the sync's source nor in its ledger (a model that is not built yet
    knows none of them, which plan_sync then reports as the missing model)."""
    ensure_ledger(con)
    load_sync_settings(con, spec)
    key = quote_ident(spec.key)
    try:
        found = {k for (k,) in con.execute(
            f"SELECT CAST(q.{key} AS VARCHAR) FROM ({spec.source_sql}) AS q "
            f"WHERE list_contains(?, CAST(q.{key} AS VARCHAR))", [list(keys)]).fetchall()}
    except duckdb.CatalogException:
        return []
    found |= {k for (k,) in con.execute("SELECT record_key FROM sync.ledger WHERE sync_name = ? "
                                        "AND list_contains(?, record_key)", [spec.name, list(keys)]).fetchall()}
    return [k for k in keys if k not in found]


def _unknown_keys_message(con: duckdb.DuckDBPyConnection, spec: SyncSpec, missing: Sequence[str]) -> str:
    """One paragraph: which keys, which sync, what a key looks like there, and how to list the real ones."""
    example = con.execute(f"SELECT CAST({quote_ident(spec.key)} AS VARCHAR) FROM ({spec.source_sql}) AS q "
                          "ORDER BY 1 LIMIT 1").fetchone()
    sources = ", ".join("/".join(k) for k in spec.source_assets) or "its source SQL"
    return (f"sync {spec.name} has no record with key {', '.join(repr(k) for k in missing)}: it is neither in the "
            f"sync's source ({sources}, column {spec.key!r}) nor in its ledger. Nothing was planned or sent."
            + (f" Keys there look like {example[0]!r};" if example else " The source has no rows yet;")
            + f" `integration-pipelines sync plan {spec.name} --json` lists the records the sync would send.")


def load_sync_settings(con: duckdb.DuckDBPyConnection, spec: SyncSpec) -> None:
    """`_sync_settings (name, value)`: the sync's configuration (SyncSpec.settings) as its source SQL reads it."""
    con.execute("CREATE OR REPLACE TEMP TABLE _sync_settings (name VARCHAR PRIMARY KEY, value VARCHAR)")
    if spec.settings:
        con.executemany("INSERT INTO _sync_settings VALUES (?, ?)",
                        [[name, setting.value()] for name, setting in spec.settings.items()])


def _diff_table(con: duckdb.DuckDBPyConnection, spec: SyncSpec, start: datetime | None = None) -> None:
    """`_sync_diff`: each source row beside its ledger entry, failure history and journal state, with the target
    id it has and where that id comes from (the ledger, or the source's external_id_column), and whether it is
    older than the sync's start (a null or unreadable business time is not: it cannot be placed before it)."""
    ready = " AND ".join(f"s.{quote_ident(c)} IS NOT NULL" for c in spec.required_columns) or "true"
    # a record a mirror sync archived is gone from the target's point of view: a row that comes back is created
    ledger_ext = "CASE WHEN l.status = 'deleted' THEN NULL ELSE l.external_id END"
    # a blank id in the source is no id
    column_ext = (f"nullif(trim(CAST(s.{quote_ident(spec.external_id_column)} AS VARCHAR)), '')"
                  if spec.external_id_column else "CAST(NULL AS VARCHAR)")
    before = "false"
    if spec.start_column and start is not None:  # a DATE column compares by day: the start's own day is in
        column, moment = f"s.{quote_ident(spec.start_column)}", start.astimezone(UTC)
        before = (f"coalesce(CASE WHEN typeof({column}) = 'DATE' THEN TRY_CAST({column} AS DATE) < "
                  f"DATE '{moment.date().isoformat()}' ELSE TRY_CAST({column} AS TIMESTAMPTZ) < "
                  f"TIMESTAMPTZ '{moment.isoformat()}' END, false)")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _sync_diff AS
        SELECT *, coalesce(_ledger_ext, _column_ext) AS _external_id FROM (
            SELECT s._key, s._hash, {ledger_ext} AS _ledger_ext, {column_ext} AS _column_ext,
                   l.row_hash AS _ledger_hash, l.status AS _status, ({ready}) AS _ready,
                   p.record_key IS NOT NULL AS _pending, ({before}) AS _before_start,
                   a.row_hash AS _failed_hash, a.next_attempt_at AS _next_attempt_at,
                   CASE WHEN l.status = 'deleted' THEN strftime(l.last_synced_at, '%Y%m%dT%H%M%S.%f') END
                       AS _revived_after
            FROM _sync_source s
            LEFT JOIN sync.ledger l ON l.sync_name = '{spec.name}' AND l.record_key = s._key
            LEFT JOIN sync.pending p ON p.sync_name = '{spec.name}' AND p.record_key = s._key
            LEFT JOIN sync.attempts a ON a.sync_name = '{spec.name}' AND a.record_key = s._key)""")


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
    # null_fields="omit": a NULL column leaves its field out (the target keeps its value) instead of clearing it
    return spec.shape_payload(render_template(_template(spec, operation), variables, where=f"sync {spec.name} payload"))


def _template(spec: SyncSpec, operation: str) -> dict[str, Any]:
    if operation == "delete":  # the row has left the model: only the key and the target's id are known
        return spec.delete_payload or {}
    return (spec.update_payload if operation == "update" else None) or spec.payload


def _placeholders(system: System) -> dict[str, str]:
    """System and login values as `<name>`: a plan never logs in and never shows a credential."""
    return {k: f"<{k}>" for k in [*system.values, *(system.login.variables if system.login else {})]}


def _model_fields(template: Any, payload: Any, columns: set[str], path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of each payload field filled from a model column: what an update can change.
    Constants, `{external_id}`, `{record_key}` and system values are the same in every send: not listed."""
    if isinstance(template, dict) and isinstance(payload, dict):
        for name, part in template.items():
            yield from _model_fields(part, payload.get(name), columns, f"{path}.{name}" if path else name)
    elif isinstance(template, list) and isinstance(payload, list):
        for index, (part, value) in enumerate(zip(template, payload, strict=False)):
            yield from _model_fields(part, value, columns, f"{path}[{index}]")
    elif isinstance(template, str) and any(name in columns for _, name, _, _ in string.Formatter().parse(template)
                                           if name):
        yield path, payload


def field_changes(spec: SyncSpec, record: Record, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """An update's fields, old → new. The old value is never known here (OLD_VALUES_UNKNOWN), and says so."""
    return [{"field": path, "old": None, "old_known": False, "new": value}
            for path, value in _model_fields(_template(spec, "update"), payload, set(record.row))]


def _last_push_json(last: LastPush | None) -> dict[str, Any]:
    if last is None:  # not planned by plan_sync (a hand-made plan): nothing is known
        return {"why": None, "ledger_status": None, "last_pushed_at": None, "last_run_id": None}
    return {"why": last.why(), "ledger_status": last.status, "last_run_id": last.run_id,
            "last_pushed_at": last.pushed_at.astimezone(UTC).isoformat() if last.pushed_at else None}


def describe_plan(spec: SyncSpec, plan: SyncPlan, limit: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """The plan record by record, as `sync plan --json` prints it: each create, update and delete with its key,
    target id and payload (system values as <placeholders>), updates with why they are sent and their fields;
    linked and in-doubt records by key. `limit`: at most that many of each."""
    values = _placeholders(get_system(spec.target))
    described: dict[str, list[dict[str, Any]]] = {}
    for name, operation, records in (("creates", "create", plan.creates), ("updates", "update", plan.updates),
                                     ("deletes", "delete", plan.deletes)):
        described[name] = []
        for record in records[:limit]:
            entry: dict[str, Any] = {"key": record.key, "external_id": record.external_id,
                                     "payload": payload_for(spec, record, operation, values)}
            if operation == "update":
                entry.update(_last_push_json(plan.last_push.get(record.key)))
                entry["changes"] = field_changes(spec, record, entry["payload"])
            described[name].append(entry)
    for name, records in (("linked", plan.linked), ("in_doubt", plan.in_doubt)):
        described[name] = [{"key": r.key, "external_id": r.external_id} for r in records[:limit]]
    return described


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


def _journal(con: duckdb.DuckDBPyConnection, spec: SyncSpec, batch: _Batch, run_id: str, now: datetime,
             target: _Target | None = None) -> None:
    """Write-ahead: the batch as it will be sent, inside the caller's transaction; positions only grow, so
    journaled batches are re-sent in the order they were first sent, whichever run journaled them. Each record
    also says where it goes (system, mode, account)."""
    position = con.execute("SELECT coalesce(max(position) + 1, 0) FROM sync.pending").fetchone()[0]
    where = [target.system, target.mode, target.account] if target is not None else [None, None, None]
    con.executemany(
        """INSERT OR REPLACE INTO sync.pending (sync_name, record_key, operation, idempotency_key, position, row_hash,
               external_id, row_json, run_id, journaled_at, target_system, target_mode, target_account)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [[spec.name, r.key, batch.operation, batch.key, position + i, r.row_hash or None, r.external_id,
          json.dumps(_jsonable(r.row), default=str), run_id, now, *where] for i, r in enumerate(batch.records)])


def run_sync(
    spec: SyncSpec,
    warehouse: Warehouse,
    settings: Settings,
    *,
    run_id: str,
    dry_run: bool = False,
    log: LogSink | None = None,
    client_kwargs: dict[str, Any] | None = None,
    sync_settings: SyncSettings | None = None,
    alerter: Any = None,
    lock_timeout: float = SYNC_LOCK_SECONDS,
    keys: Sequence[str] | None = None,
) -> SyncResult:
    """Plan, send and record one sync. Raises SyncFailedError only for systemic trouble (see the module doc);
    `alerter` (default: `alerts.Alerter`) announces records that fail for the first time or get parked.

    One process at a time per sync (a lock under `IP_DATA_DIR/locks`): the nightly job's step, the event lane
    and `integration-pipelines sync run` may all want the same sync at once, and two of them planning the same
    creates would send them twice. A dry run sends nothing and takes no lock. `locks.LockTimeoutError` when the
    sync stays busy elsewhere for `lock_timeout` seconds (the event lane passes 0: it never waits while it holds
    the warehouse, or the other holder could wait for the warehouse in turn).

    `keys`: only these records (`sync run NAME --key K`), through the same lock, plan, ledger and sends; a key
    neither in the source nor in the ledger raises UnknownRecordKeysError before anything is recorded."""
    if keys is not None and not keys:
        raise ValueError(f"sync {spec.name}: an empty selection of keys; pass None to run every record")
    if dry_run:
        return _run_sync(spec, warehouse, settings, run_id=run_id, dry_run=True, log=log,
                         client_kwargs=client_kwargs, sync_settings=sync_settings, alerter=alerter, keys=keys)
    with exclusive(lock_path(settings.data_dir, f"sync-{spec.name}"), timeout=lock_timeout):
        return _run_sync(spec, warehouse, settings, run_id=run_id, dry_run=False, log=log,
                         client_kwargs=client_kwargs, sync_settings=sync_settings, alerter=alerter, keys=keys)


def _run_sync(
    spec: SyncSpec,
    warehouse: Warehouse,
    settings: Settings,
    *,
    run_id: str,
    dry_run: bool,
    log: LogSink | None,
    client_kwargs: dict[str, Any] | None,
    sync_settings: SyncSettings | None,
    alerter: Any,
    keys: Sequence[str] | None = None,
) -> SyncResult:
    started = datetime.now(UTC)
    policy = sync_settings or SyncSettings()
    with warehouse.connect() as con:
        if keys is not None:
            keys = list(dict.fromkeys(keys))
            missing = unknown_keys(con, spec, keys)
            if missing:
                raise UnknownRecordKeysError(_unknown_keys_message(con, spec, missing))
        start, start_source = _resolve_start(con, spec, policy, run_id, started, record=not dry_run)
        plan = plan_sync(con, spec, start=start, now=started, keys=keys)
        # a selected run leaves journaled batches to a full run: re-sending part of one changes its idempotency key
        interrupted = [] if dry_run or keys is not None else _pending_batches(con, spec)
    if keys is not None and plan.pending and log is not None:
        log.warning(f"sync {spec.name}: {plan.pending} selected record(s) are journaled in an interrupted batch; "
                    f"this run leaves them alone, and a full run (`integration-pipelines sync run {spec.name}`) "
                    "re-sends that batch first, under its original idempotency key")
    result = SyncResult(plan=plan, dry_run=dry_run, policy=policy, start_source=start_source)
    operations = [("create", spec.create_writer, plan.creates), ("update", spec.update_writer, plan.updates),
                  ("delete", spec.delete_writer, plan.deletes)]
    system = get_system(spec.target)
    resolution: dict[str, Any] = {}

    def resolved_target() -> tuple[Any, _Target]:
        """The target resolved for writing (once, when the run first records or sends anything): the refusal of
        mixed sandbox and live data happens here (provenance.py), before anything is written."""
        if not resolution:
            resolved = resolve_system(system, settings, purpose="write")  # a live target is checked in there
            if resolved.mode == "sandbox":  # live data into the sandbox, or a ledger of the real service's ids
                with warehouse.connect() as con:
                    check_write_target(con, resolved, settings, os.environ, warehouse.database)
            resolution["resolved"] = resolved
            resolution["target"] = _Target(system.name, resolved.mode, account_of(resolved))
        return resolution["resolved"], resolution["target"]

    placeholders = _placeholders(system)  # samples never log in and never show a credential
    for operation, _, records in operations:
        for record in records[:SAMPLE_SIZE]:
            result.samples.append({"operation": operation, "key": record.key,
                                   "payload": payload_for(spec, record, operation, placeholders)})
    if not dry_run and plan.linked:  # nothing to send: the target already holds them
        _record(warehouse, spec, "create", [_Outcome(Record(r.key, "", r.external_id, r.row), r.external_id, None,
                                                     {}, status="linked") for r in plan.linked], run_id, result,
                target=resolved_target()[1])
    batches: list[tuple[AnyWriter, _Batch]] = []
    for operation, writer_name, records in [] if dry_run else operations:
        if records and writer_name is not None:
            writer = find_writer(system, writer_name)
            size = min(spec.batch_size or batch_size(writer), batch_size(writer))
            batches += [(writer, _Batch(operation, chunk, idempotency_key(spec, operation, chunk)))
                        for chunk in _chunks(records, size)]
    resend, check = _sort_interrupted(warehouse, spec, system, interrupted, run_id, result, log)
    recheck = _recheck_writer(spec, system, plan) if not dry_run else None
    if not dry_run and (resend or check or batches or recheck):
        resolved, target = resolved_target()
        with write_client(resolved, log=log, **(client_kwargs or {})) as client:  # REST or SOAP: one dispatch
            system_values = {**resolved.values, **login_variables(http_of(client), resolved)}
            if resend and log is not None:
                log.warning(f"sync {spec.name}: re-sending {len(resend)} batch(es) that an earlier run sent without "
                            "recording the outcome, under their original idempotency keys")
            for writer, batch in resend:  # first, exactly as they were sent: the target replays what it saved
                outcomes = _send(client, resolved, writer, spec, batch, system_values)
                _record(warehouse, spec, batch.operation, outcomes, run_id, result, target=target)
                result.resumed += len(batch.records)
            for writer, batch in check:  # unkeyed creates: never re-sent blindly; found, absent, or held in doubt
                why = "an earlier run sent it (or was about to) without recording the outcome"
                outcomes = _look_up_records(client, resolved, writer, spec, batch.records, system_values, why)
                _record(warehouse, spec, batch.operation, outcomes, run_id, result, target=target)
            if recheck is not None:  # creates held in doubt by earlier runs: the lookup may know by now
                why = "an earlier run could not tell whether the target applied it"
                outcomes = _look_up_records(client, resolved, recheck, spec, plan.in_doubt, system_values, why)
                _record(warehouse, spec, "create", [o for o in outcomes if o.status in ("linked", "absent")],
                        run_id, result, target=target)
            if batches:  # journal the first batch; each outcome's transaction journals the next one
                _record(warehouse, spec, batches[0][1].operation, [], run_id, result, journal_next=batches[0][1],
                        target=target)
            for index, (writer, batch) in enumerate(batches):
                outcomes = _send(client, resolved, writer, spec, batch, system_values)
                following = batches[index + 1][1] if index + 1 < len(batches) else None
                _record(warehouse, spec, batch.operation, outcomes, run_id, result, journal_next=following,
                        target=target)
    _log_run(warehouse, spec, run_id, started, result)
    if result.in_doubt and log is not None:
        log.warning(f"sync {spec.name}: {result.in_doubt} record(s) are in doubt and will not be sent again "
                    f"automatically; see sync.errors and docs/syncs.md. First: {result.errors[-1][2]}")
    known = result.failed - len(result.new_failures) - result.transient
    if known and log is not None:
        log.warning(f"sync {spec.name}: {known} record(s) already known to fail were refused again (reported, "
                    f"not failing the run); {len(result.parked_now)} parked now. "
                    f"See `integration-pipelines sync errors {spec.name}`.")
    if not dry_run:
        _announce(spec, result, alerter, log)
    attempted = len(plan.creates) + len(plan.updates) + len(plan.deletes) + result.resumed
    new_failed = len(result.new_failures) + result.transient
    if not dry_run and attempted and new_failed / attempted > spec.error_threshold:
        first = next((m for _, _, m in result.new_failures), result.errors[0][2] if result.errors else "")
        raise SyncFailedError(
            f"sync {spec.name}: {new_failed} of {attempted} records failed (threshold "
            f"{spec.error_threshold:.0%}). First error: {first}. Details: `integration-pipelines sync errors "
            f"{spec.name}` (sync.attempts, sync.errors); refused records are retried after a backoff and parked "
            f"after {policy.max_attempts} attempts.")
    return result


def _short(message: str, limit: int = 240) -> str:
    line = message.splitlines()[0] if message else ""
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _resolve_start(con: duckdb.DuckDBPyConnection, spec: SyncSpec, policy: SyncSettings, run_id: str,
                   now: datetime, *, record: bool) -> tuple[datetime | None, str]:
    """The sync's start and where it comes from. The moment a sync first ran against this warehouse is recorded
    once (`sync.starts`; for a sync that ran before starts were recorded, its first run in `sync.runs`); it is the
    start unless IP_SYNC_<NAME>_START or IP_SYNC_START set one. A dry run records nothing."""
    ensure_ledger(con)
    row = con.execute("SELECT first_run_at FROM sync.starts WHERE sync_name = ?", [spec.name]).fetchone()
    if row is None:
        earliest = con.execute("SELECT min(started_at) FROM sync.runs WHERE sync_name = ? AND NOT dry_run",
                               [spec.name]).fetchone()[0]
        first = earliest or now
        if record:
            con.execute("INSERT INTO sync.starts VALUES (?, ?, ?) ON CONFLICT DO NOTHING", [spec.name, first, run_id])
    else:
        first = row[0]
    configured = policy.configured_start(spec.name)
    if configured is not None:
        return configured
    return first, "first run"


def _announce(spec: SyncSpec, result: SyncResult, alerter: Any, log: LogSink | None) -> None:
    """One alert per record, not per run: when it first fails, and when it is parked. Records that went through
    again close their incidents, so a later failure is announced again. Alerting never fails the sync."""
    if not (result.new_failures or result.parked_now or result.recovered):
        return
    try:
        from ..alerts import Alert, Alerter

        alerter = alerter or Alerter()
        for key in result.recovered:
            for kind in ("failing", "parked"):
                alerter.resolve(f"sync:{spec.name}:record:{key}:{kind}")
        max_attempts = (result.policy or SyncSettings()).max_attempts
        where = f"{alerter.config.ui_base_url}/assets/sync/{spec.name}"
        todo = (f"See them with `integration-pipelines sync errors {spec.name}`; acknowledge one with `sync skip "
                f"{spec.name} KEY`, send it again with `sync retry {spec.name} KEY`.")
        for kind, records, title, what in (
                ("failing", result.new_failures, "refused by", "failed for the first time; they are sent again "
                 f"after a backoff, at most {max_attempts} times"),
                ("parked", result.parked_now, "parked after repeated refusals by", f"were refused {max_attempts} "
                 "times and are not sent again automatically")):
            fresh = [r for r in records if alerter.incidents.open(f"sync:{spec.name}:record:{r[0]}:{kind}")]
            if not fresh:
                continue
            listed = "; ".join(f"{key} ({operation}): {_short(message)}"
                               for key, operation, message in fresh[:10])
            more = f" and {len(fresh) - 10} more" if len(fresh) > 10 else ""
            alerter.send(Alert(
                incident=f"sync:{spec.name}:records:{kind}",
                title=f"sync {spec.name}: {len(fresh)} record(s) {title} {spec.target}",
                summary=f"{len(fresh)} record(s) of sync {spec.name} {what}: {listed}{more}. {todo}",
                url=where, first_error=fresh[0][2].splitlines()[0][:300]))
    except Exception as exc:  # a broken alert channel must not fail the sync it reports on
        if log is not None:
            log.warning(f"sync {spec.name}: could not send the record alert: {redact(str(exc))}")


def _sort_interrupted(warehouse: Warehouse, spec: SyncSpec, system: System, interrupted: list[_Batch], run_id: str,
                      result: SyncResult, log: LogSink | None
                      ) -> tuple[list[tuple[AnyWriter, _Batch]], list[tuple[AnyWriter, _Batch]]]:
    """Decide what becomes of each journaled batch: re-sent as it was (a keyed or naturally idempotent write: the
    target replays or repeats harmlessly), checked (an unkeyed create: re-sending could make a second record, so the
    engine looks it up or holds it in doubt), or forgotten (the model no longer sends any of it)."""
    resend: list[tuple[AnyWriter, _Batch]] = []
    check: list[tuple[AnyWriter, _Batch]] = []
    for batch in interrupted:
        if not any(r.key in result.plan.still_wanted for r in batch.records):
            # e.g. an Odoo order since extracted back: not sending cannot duplicate anything, while sending could
            # fail on the target's own uniqueness check
            _record(warehouse, spec, batch.operation, [], run_id, result, forget=batch)
            if log is not None:
                log.warning(f"sync {spec.name}: dropped an interrupted {batch.operation} batch of "
                            f"{len(batch.records)} record(s) that the model no longer sends")
            continue
        writer_name = _writer_name(spec, batch.operation)
        if writer_name is None:
            raise ValueError(
                f"sync {spec.name}: {len(batch.records)} record(s) of an interrupted {batch.operation} "
                f"batch are journaled in sync.pending, but the sync has no {batch.operation}_writer any "
                "more. Restore the writer, or delete those rows from sync.pending after checking the target.")
        writer = find_writer(system, writer_name)
        (resend if replay_safe(writer) else check).append((writer, batch))
    return resend, check


def _recheck_writer(spec: SyncSpec, system: System, plan: SyncPlan) -> AnyWriter | None:
    """The create writer to look up the records held in doubt with, when there are any and it has a lookup."""
    if not plan.in_doubt or spec.create_writer is None:
        return None
    writer = find_writer(system, spec.create_writer)
    return writer if has_lookup(writer) else None


@dataclass
class _Outcome:
    record: Record
    external_id: str | None
    error: str | None
    payload: dict[str, Any]
    in_doubt_key: str | None = None  # the key of a request that may have been applied: re-send with this key
    # None: decided by the operation (synced/deleted) or the error (failed). `linked`: found in the target, recorded
    # with its id; `in_doubt`: an unkeyed create that may have been applied, held; `absent`: looked up and not
    # found, so the next run creates it (no error of this run)
    status: str | None = None
    transient: bool = False  # no answer (unreachable, 5xx after retries): target trouble, never parks the record


def _send(client, resolved, writer, spec: SyncSpec, batch: _Batch,  # type: ignore[no-untyped-def]
          system_values: dict[str, Any], sends_left: int | None = None) -> list[_Outcome]:
    """Send one batch and say what became of each record. `sends_left` bounds how often an unkeyed create that the
    target provably did not apply (its lookup found nothing) is sent again in this run."""
    records, operation = batch.records, batch.operation
    payloads = [payload_for(spec, r, operation, system_values) for r in records]
    try:
        path = {"external_id": records[0].external_id} if len(records) == 1 else None
        written = dispatch_write(client, resolved, writer, payloads, idempotency_key=batch.key, path_variables=path)
    except AuthError:
        raise  # a credential problem fails every record alike: stop and say which variable to fix
    except ApiError as exc:
        if len(records) > 1:  # isolate the bad record(s): the rest of the batch still goes through
            return [o for r in records for o in _send(
                client, resolved, writer, spec, _Batch(operation, [r], idempotency_key(spec, operation, [r])),
                system_values)]
        return [_Outcome(records[0], None, str(exc), payloads[0])]
    except OutcomeUnknownError as exc:
        if not replay_safe(writer):  # an unkeyed create may have been applied: ask the target, never repeat it blindly
            left = http_of(client).retry.max_attempts - 1 if sends_left is None else sends_left - 1
            return [o for o in _look_up_records(client, resolved, writer, spec, records, system_values, str(exc))
                    for o in _again_if_absent(client, resolved, writer, spec, operation, o, system_values, left)]
        return [_Outcome(r, None, str(exc), p, in_doubt_key=batch.key, transient=True)
                for r, p in zip(records, payloads, strict=True)]
    except ConnectorError as exc:  # retries exhausted, malformed answer
        if not replay_safe(writer):  # the client retried only what provably never reached the target
            return [_Outcome(r, None, str(exc), p, transient=True) for r, p in zip(records, payloads, strict=True)]
        # the target may still have applied the request, so it stays journaled under the key it went out with
        return [_Outcome(r, None, str(exc), p, in_doubt_key=batch.key, transient=True)
                for r, p in zip(records, payloads, strict=True)]
    ids = written.external_ids
    if operation == "delete":
        return [_Outcome(r, r.external_id, None, p) for r, p in zip(records, payloads, strict=True)]
    if len(ids) != len(records):
        message = f"{resolved.system.title} answered {len(ids)} results for a batch of {len(records)}"
        return [_Outcome(r, None, message, p) for r, p in zip(records, payloads, strict=True)]
    return [_Outcome(r, i or r.external_id, None if (i or r.external_id) else "no id in the answer", p)
            for r, i, p in zip(records, ids, payloads, strict=True)]


def _again_if_absent(client, resolved, writer: AnyWriter, spec: SyncSpec,  # type: ignore[no-untyped-def]
                     operation: str, outcome: _Outcome, system_values: dict[str, Any], sends_left: int
                     ) -> list[_Outcome]:
    """A create the lookup proved was not applied is as safe to send again as one that never left: sent again
    (within the client's attempt budget), or else a failure of this run that the next run retries."""
    if outcome.status != "absent":
        return [outcome]
    if sends_left <= 0:
        return [_Outcome(outcome.record, None, outcome.error, outcome.payload, transient=True)]
    batch = _Batch(operation, [outcome.record], idempotency_key(spec, operation, [outcome.record]))
    return _send(client, resolved, writer, spec, batch, system_values, sends_left)


def _look_up_records(client, resolved, writer: AnyWriter, spec: SyncSpec,  # type: ignore[no-untyped-def]
                     records: Sequence[Record], system_values: dict[str, Any], why: str) -> list[_Outcome]:
    """Find out, through the writer's lookup, whether unkeyed creates reached the target: one match is linked, none
    means not created (`absent`: safe to create), and no lookup, a failed lookup or several matches hold the record
    in doubt for an operator."""
    outcomes = []
    for record in records:
        payload = payload_for(spec, record, "create", system_values)
        try:
            ids = look_up_any(client, resolved, writer, payload)
            detail = "" if ids is not None else "no lookup can tell"
        except ConnectorError as exc:
            ids, detail = None, f"the lookup failed: {exc}"
        if ids is not None and len(ids) == 1 and ids[0]:
            outcomes.append(_Outcome(record, ids[0], None, payload, status="linked"))
        elif ids == []:
            message = f"{why.rstrip('. ')}; {resolved.system.title} holds no such record, so it was not created"
            outcomes.append(_Outcome(record, None, message, payload, status="absent"))
        else:
            detail = detail or f"the lookup found {len(ids or [])} matching records"
            outcomes.append(_Outcome(record, None, _in_doubt_message(spec, resolved.system, record, why, detail),
                                     payload, status="in_doubt"))
    return outcomes


def _in_doubt_message(spec: SyncSpec, system: System, record: Record, why: str, detail: str) -> str:
    """What an operator reads in sync.errors: which sync and record, why it is held, and what to check."""
    where = (f"UPDATE sync.ledger SET external_id = '<id>', status = 'linked' WHERE sync_name = '{spec.name}' "
             f"AND record_key = '{record.key}'")
    return (f"sync {spec.name}: record {record.key!r} is in doubt ({why.rstrip('. ')}; {detail}). {system.title} "
            "may or may not have created it, and it is not sent again automatically, because a second send could "
            f"create a second one. Check in {system.title} whether a record for {record.key!r} exists (the payload "
            f"excerpt in sync.errors shows what was sent). If it does, record its id: {where} (or let the sync's "
            "source give it in its external id column). If it does not, delete that ledger row and the next run "
            "creates it.")


_COUNTER = {"create": "created", "update": "updated", "delete": "deleted"}


def _record(warehouse: Warehouse, spec: SyncSpec, operation: str, outcomes: list[_Outcome], run_id: str,
            result: SyncResult, *, journal_next: _Batch | None = None, forget: _Batch | None = None,
            target: _Target | None = None) -> None:
    """One transaction: the batch's outcomes into the ledger (and errors), its journal rows resolved, and the
    next batch journaled, so a crash at any instant leaves either the journal or the ledger, never neither.
    `forget` drops a journaled batch without an outcome (the model no longer sends it). `target`: where the
    outcomes went, recorded per ledger entry in `sync.ledger_targets` and per journaled record."""
    now = datetime.now(UTC)
    with warehouse.connect() as con:
        con.execute("BEGIN TRANSACTION")
        try:
            ensure_ledger(con)
            for o in outcomes:
                _record_outcome(con, spec, operation, o, run_id, now, result)
            if target is not None and outcomes:  # one statement for the batch, not one per record
                con.execute(
                    """INSERT INTO sync.ledger_targets
                       SELECT ?, unnest(?::VARCHAR[]), ?, ?, ?, ?, ?
                       ON CONFLICT (sync_name, record_key) DO UPDATE SET target_system = excluded.target_system,
                         target_mode = excluded.target_mode, target_account = excluded.target_account,
                         run_id = excluded.run_id, recorded_at = excluded.recorded_at""",
                    [spec.name, list(dict.fromkeys(o.record.key for o in outcomes)), target.system, target.mode,
                     target.account, run_id, now])
            done = [o.record.key for o in outcomes if o.error is None and o.status in (None, "linked")]
            if done:  # went through: its failure history is over (a later failure is a new one)
                result.recovered += [k for (k,) in con.execute(
                    "DELETE FROM sync.attempts WHERE sync_name = ? AND list_contains(?, record_key) "
                    "RETURNING record_key", [spec.name, done]).fetchall()]
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
                _journal(con, spec, journal_next, run_id, now, target)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def _record_outcome(con: duckdb.DuckDBPyConnection, spec: SyncSpec, operation: str, o: _Outcome, run_id: str,
                    now: datetime, result: SyncResult) -> None:
    """One record's outcome into the ledger (and sync.errors when someone should read it), and the run's counters."""
    status = o.status or ("failed" if o.error is not None else "deleted" if operation == "delete" else "synced")
    if status in ("synced", "deleted", "linked"):
        # a link from the source carries no hash (nothing was pushed); any other outcome keeps the last one known
        con.execute("""INSERT INTO sync.ledger VALUES (?, ?, ?, ?, ?, 0, NULL, ?, ?)
            ON CONFLICT (sync_name, record_key) DO UPDATE SET
              row_hash = CASE WHEN excluded.status = 'linked' THEN excluded.row_hash
                              ELSE coalesce(excluded.row_hash, sync.ledger.row_hash) END,
              external_id = excluded.external_id, status = excluded.status, attempts = 0,
              last_error = NULL, last_synced_at = excluded.last_synced_at,
              last_run_id = excluded.last_run_id""",
                    [spec.name, o.record.key, o.record.row_hash or None, o.external_id, status, now, run_id])
        counter = "linked" if status == "linked" else _COUNTER[operation]
        setattr(result, counter, getattr(result, counter) + 1)
        return
    message = redact(o.error or "")[:2000]
    if status in ("in_doubt", "absent"):  # `absent`: failed, so the next run creates it (no backoff: not refused)
        ledger_status = "in_doubt" if status == "in_doubt" else "failed"
        con.execute("""INSERT INTO sync.ledger VALUES (?, ?, NULL, ?, ?, 1, ?, NULL, ?)
            ON CONFLICT (sync_name, record_key) DO UPDATE SET status = excluded.status,
              attempts = sync.ledger.attempts + 1, last_error = excluded.last_error,
              last_run_id = excluded.last_run_id""",
                    [spec.name, o.record.key, o.record.external_id, ledger_status, message, run_id])
        if status == "absent":
            return
    else:
        _record_failure(con, spec, operation, o, run_id, now, result, message)
    con.execute("INSERT INTO sync.errors VALUES (?, ?, ?, ?, ?, ?, ?)",
                [spec.name, o.record.key, run_id, now, operation, message,
                 redact(json.dumps(o.payload, default=str))[:500]])
    result.errors.append((o.record.key, operation, message))
    if status == "in_doubt":
        result.in_doubt += 1
    else:
        result.failed += 1


def _record_failure(con: duckdb.DuckDBPyConnection, spec: SyncSpec, operation: str, o: _Outcome, run_id: str,
                    now: datetime, result: SyncResult, message: str) -> None:
    """A failed record's ledger status and failure history. The same version failing again is a known failure
    (one more attempt, a longer backoff, parked at the limit); a first failure, or a changed row's, is new. A
    failure without an answer (target unreachable) counts as an attempt but never parks: it is the target's
    trouble, not the record's, and the step fails for it."""
    policy = result.policy or SyncSettings()
    before = con.execute("""SELECT a.row_hash, a.attempts, a.first_error_at, l.status
                            FROM sync.attempts a LEFT JOIN sync.ledger l USING (sync_name, record_key)
                            WHERE a.sync_name = ? AND a.record_key = ?""", [spec.name, o.record.key]).fetchone()
    known = (before is not None and before[0] == o.record.row_hash
             and before[3] in ("failed", "parked", "skipped"))
    attempts = (before[1] if known else 0) + 1
    first_error_at = before[2] if known and before[2] is not None else now
    parked = not o.transient and attempts >= policy.max_attempts
    next_attempt_at = None if parked or o.transient else now + policy.backoff(attempts)
    status = "parked" if parked else "failed"
    con.execute("""INSERT INTO sync.ledger VALUES (?, ?, NULL, ?, ?, ?, ?, NULL, ?)
        ON CONFLICT (sync_name, record_key) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
          last_error = excluded.last_error, last_run_id = excluded.last_run_id""",
                [spec.name, o.record.key, o.record.external_id, status, attempts, message, run_id])
    con.execute("""INSERT OR REPLACE INTO sync.attempts (sync_name, record_key, row_hash, operation, attempts,
                       first_error_at, last_error_at, last_error, next_attempt_at, parked_at, skipped_at, skip_reason)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)""",
                [spec.name, o.record.key, o.record.row_hash or None, operation, attempts, first_error_at, now,
                 message, next_attempt_at, now if parked else None])
    if o.transient:
        result.transient += 1
    elif not known:
        result.new_failures.append((o.record.key, operation, message))
    if parked:
        result.parked_now.append((o.record.key, operation, message))


def _log_run(warehouse: Warehouse, spec: SyncSpec, run_id: str, started: datetime, result: SyncResult) -> None:
    plan = result.plan
    with warehouse.connect() as con:
        ensure_ledger(con)
        held = con.execute("SELECT count(*) FROM sync.ledger WHERE sync_name = ? AND status = 'in_doubt'",
                           [spec.name]).fetchone()[0]
        con.execute("""INSERT INTO sync.runs (run_id, sync_name, target, started_at, finished_at, dry_run,
                           planned_creates, planned_updates, planned_deletes, unchanged, waiting, created, updated,
                           deleted, failed, planned_linked, linked, in_doubt, before_start, backoff, parked,
                           skipped, new_failures)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    [run_id, spec.name, spec.target, started, datetime.now(UTC), result.dry_run,
                     len(plan.creates), len(plan.updates), len(plan.deletes), plan.unchanged, plan.waiting,
                     result.created, result.updated, result.deleted, result.failed, len(plan.linked), result.linked,
                     held, plan.before_start, plan.backoff, plan.parked + len(result.parked_now), plan.skipped,
                     len(result.new_failures) + result.transient])
