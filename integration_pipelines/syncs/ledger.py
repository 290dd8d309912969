"""The sync ledger: per sync and record key, what was last pushed (row hash), the target's id, and status.

It is what makes a sync idempotent across runs (unchanged rows are not sent again; a created record is updated,
never created twice) and what later syncs read to resolve references.

`sync.pending` is its write-ahead half: the batch about to be sent (records, the idempotency key it goes out
with, and the model row each payload is rendered from), committed *before* the request. A run killed after the
target accepted a batch and before the ledger recorded it leaves the batch here, and the next run re-sends exactly
that batch with exactly that key, so the target replays its first answer. Re-planning instead would build the
batch from the current model: another composition or row hash means another key, and a second invoice. A write
whose answer was lost (retries exhausted) stays here the same way; a batch none of whose records the model would
still send (an Odoo order since extracted back) is dropped instead of re-sent. Rows, not rendered payloads, are
kept, because payloads can carry credentials (JSON-RPC login values) and rows cannot.

Ledger statuses: `synced` (written, the target's id known), `failed` (retried by the next run), `deleted` (archived
by a mirror sync), `linked` (found in the target, not created by this sync: the source's external id column, or a
lookup after a lost answer; it counts as synced from then on) and `in_doubt` (a create without an idempotency key
that the target may or may not have applied: never re-sent automatically; looked up again by each run when the
writer can search, else it waits for an operator, docs/syncs.md), `parked` (refused by the target
`IP_SYNC_MAX_ATTEMPTS` times: not sent again until an operator runs `sync retry`) and `skipped` (acknowledged by an
operator with `sync skip`: never sent, not counted as a failure).

`sync.attempts` is the failure half of the ledger, one row per record that failed: the version of the row that
failed (its hash), how often it was sent and refused, first and last error time, the last error, when the next
run may send it again (exponential backoff), and when it was parked or skipped (with the operator's reason). A
changed row is a new version and starts again at one attempt. `sync.starts` records, once, the moment each sync
first ran against this warehouse: its start date when `IP_SYNC_<NAME>_START` / `IP_SYNC_START` are unset.

Where each entry went (issue 15, sandbox and live never mix): `sync.ledger_targets` holds, per ledger entry (same
key), the target system, its mode (`sandbox` | `live`) and its account (`provenance.account_of`: the host and the
realm/tenant/shop, never a credential) at the time the entry was last written; `sync.pending` carries the same
three columns for each journaled record. A ledger entry's external id belongs to that account, so a write into
another mode or another live account refuses while such entries exist (`provenance.py`). Entries written before
these columns existed have no `ledger_targets` row (or NULLs in `sync.pending`): unknown, never taken as a match or
a mismatch. Why a table beside the ledger rather than two more ledger columns: `INSERT INTO sync.ledger VALUES
(...)` with the ledger's nine columns is written in operators' scripts, tests and the benchmarks; a tenth column
would break every one of them.
"""

from __future__ import annotations

import duckdb

DDL = (
    "CREATE SCHEMA IF NOT EXISTS sync",
    """CREATE TABLE IF NOT EXISTS sync.ledger (
        sync_name VARCHAR NOT NULL, record_key VARCHAR NOT NULL, row_hash VARCHAR, external_id VARCHAR,
        status VARCHAR NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error VARCHAR,
        last_synced_at TIMESTAMPTZ, last_run_id VARCHAR, PRIMARY KEY (sync_name, record_key))""",
    """CREATE TABLE IF NOT EXISTS sync.errors (
        sync_name VARCHAR, record_key VARCHAR, run_id VARCHAR, occurred_at TIMESTAMPTZ, operation VARCHAR,
        message VARCHAR, payload_excerpt VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS sync.runs (
        run_id VARCHAR, sync_name VARCHAR, target VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ,
        dry_run BOOLEAN, planned_creates BIGINT, planned_updates BIGINT, planned_deletes BIGINT,
        unchanged BIGINT, waiting BIGINT, created BIGINT, updated BIGINT, deleted BIGINT, failed BIGINT,
        planned_linked BIGINT DEFAULT 0, linked BIGINT DEFAULT 0, in_doubt BIGINT DEFAULT 0)""",
    # a sync.runs table made before links and in-doubt records existed gains their columns (old runs count 0)
    "ALTER TABLE sync.runs ADD COLUMN IF NOT EXISTS planned_linked BIGINT DEFAULT 0",
    "ALTER TABLE sync.runs ADD COLUMN IF NOT EXISTS linked BIGINT DEFAULT 0",
    "ALTER TABLE sync.runs ADD COLUMN IF NOT EXISTS in_doubt BIGINT DEFAULT 0",
    # records the plan held back: before the sync's start, waiting for their backoff, parked, skipped by a person
    *(f"ALTER TABLE sync.runs ADD COLUMN IF NOT EXISTS {c} BIGINT DEFAULT 0"
      for c in ("before_start", "backoff", "parked", "skipped", "new_failures")),
    """CREATE TABLE IF NOT EXISTS sync.attempts (
        sync_name VARCHAR NOT NULL, record_key VARCHAR NOT NULL, row_hash VARCHAR, operation VARCHAR,
        attempts INTEGER NOT NULL DEFAULT 0, first_error_at TIMESTAMPTZ, last_error_at TIMESTAMPTZ,
        last_error VARCHAR, next_attempt_at TIMESTAMPTZ, parked_at TIMESTAMPTZ, skipped_at TIMESTAMPTZ,
        skip_reason VARCHAR, PRIMARY KEY (sync_name, record_key))""",
    """CREATE TABLE IF NOT EXISTS sync.starts (
        sync_name VARCHAR PRIMARY KEY, first_run_at TIMESTAMPTZ NOT NULL, run_id VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS sync.pending (
        sync_name VARCHAR NOT NULL, record_key VARCHAR NOT NULL, operation VARCHAR NOT NULL,
        idempotency_key VARCHAR NOT NULL, position BIGINT NOT NULL, row_hash VARCHAR, external_id VARCHAR,
        row_json VARCHAR NOT NULL, run_id VARCHAR, journaled_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (sync_name, record_key))""",
    # the target each journaled record goes to (NULL: journaled before these columns existed)
    *(f"ALTER TABLE sync.pending ADD COLUMN IF NOT EXISTS {c} VARCHAR"
      for c in ("target_system", "target_mode", "target_account")),
    """CREATE TABLE IF NOT EXISTS sync.ledger_targets (
        sync_name VARCHAR NOT NULL, record_key VARCHAR NOT NULL, target_system VARCHAR NOT NULL,
        target_mode VARCHAR NOT NULL, target_account VARCHAR, run_id VARCHAR, recorded_at TIMESTAMPTZ,
        PRIMARY KEY (sync_name, record_key))""",
)

#: Ledger statuses whose entry holds (or may hold) an id of the target's account: a record created, linked, archived
#: there, or sent without a known outcome. A failed, parked or skipped entry never reached it.
HOLDS_TARGET_ID = ("synced", "linked", "deleted", "in_doubt")


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        con.execute(statement)
