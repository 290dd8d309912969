"""The one rule every pair of books syncs shares: a record another books' sync has sent, may have sent, or is still
sending (journaled, answer unknown) is not sent to this books too; a failed or skipped one never reached the books."""

from __future__ import annotations

import duckdb

from integration_pipelines.syncs.catalog.sent_elsewhere import sent_by
from integration_pipelines.syncs.ledger import ensure_ledger


def test_sent_means_created_linked_in_doubt_or_still_journaled():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA sync")
    ensure_ledger(con)
    for key, status in [("ms_1", "synced"), ("ms_2", "linked"), ("ms_3", "in_doubt"), ("ms_4", "failed"),
                        ("ms_5", "skipped")]:
        con.execute("INSERT INTO sync.ledger (sync_name, record_key, status) VALUES ('milestones_to_xero', ?, ?)",
                    [key, status])
    # a write whose answer was lost in a crash: journaled, not yet settled by that sync's next run
    con.execute("INSERT INTO sync.pending (sync_name, record_key, operation, idempotency_key, position, row_json, "
                "journaled_at) VALUES ('milestones_to_xero', 'ms_6', 'create', 'k', 0, '{}', now())")
    # the same key sent by an unrelated sync says nothing about these books
    con.execute("INSERT INTO sync.ledger (sync_name, record_key, status) VALUES ('expenses_to_xero', 'ms_7', 'synced')")
    keys = [f"ms_{n}" for n in range(1, 8)]
    con.execute("CREATE TABLE m AS SELECT unnest(?) AS _pk", [keys])
    sent = sent_by(["milestones_to_xero"], "sent.record_key = m._pk")
    sendable = con.execute(f"SELECT _pk FROM m WHERE NOT EXISTS ({sent}) ORDER BY _pk").fetchall()
    assert [k for (k,) in sendable] == ["ms_4", "ms_5", "ms_7"]
