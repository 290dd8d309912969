"""`sync skip` reads a sync's source with the sync's settings loaded, as a run does: a record of a routed sync
(its source filters by `_sync_settings`) can be skipped by its key."""

from __future__ import annotations

import duckdb
import pytest

from integration_pipelines.syncs.operations import RecordsNotFoundError, skip_records
from integration_pipelines.syncs.spec import SyncSetting, SyncSpec

ROUTED = SyncSpec(
    name="routed_orders", title="Routed orders", description="orders for the ERP the operator routes them to",
    source_sql="""SELECT * FROM (VALUES ('po-1', 'odoo'), ('po-2', 'sap')) AS t(po, erp)
                  WHERE erp = (SELECT value FROM _sync_settings WHERE name = 'route')""",
    key="po", target="odoo", mode="insert", create_writer="create", payload={"po": "{po}"},
    settings={"route": SyncSetting(env="IP_TEST_ROUTE_FAKE", default="odoo", description="where orders go")})


def test_a_record_of_a_sync_whose_source_reads_its_settings_can_be_skipped(monkeypatch):
    monkeypatch.delenv("IP_TEST_ROUTE_FAKE", raising=False)
    con = duckdb.connect()
    assert skip_records(con, ROUTED, ["po-1"], "sent by hand") == ["po-1"]
    assert con.execute("SELECT record_key, status FROM sync.ledger").fetchall() == [("po-1", "skipped")]
    with pytest.raises(RecordsNotFoundError, match="'po-2' is neither in the sync's source"):
        skip_records(con, ROUTED, ["po-2"])  # routed to SAP: not this sync's record
