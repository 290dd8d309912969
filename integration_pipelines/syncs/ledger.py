"""The sync ledger: per sync and record key, what was last pushed (row hash), the target's id, and status.

It is what makes a sync idempotent across runs (unchanged rows are not sent again; a created record is updated,
never created twice) and what later syncs read to resolve references.
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
        unchanged BIGINT, waiting BIGINT, created BIGINT, updated BIGINT, deleted BIGINT, failed BIGINT)""",
)


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        con.execute(statement)
