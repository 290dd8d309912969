"""Sandbox and live never mix, fact by fact (issue 15): every raw row, sync ledger entry and journaled record says
which mode and which account it came from or went to, and a sync refuses to push across modes (or, live, across
accounts) with one paragraph that says how to start a clean data folder.

The "real" services are the emulators, reached in live mode (`<SYSTEM>_BASE_URL` plus credentials); the account is
what `provenance.account_of` makes of a resolution: the base URL's host and port, plus the realm/tenant/shop id
where the spec has one, never a credential.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
import pytest

from integration_pipelines.connectors.registry import get_system
from integration_pipelines.connectors.runtime import resolve_system
from integration_pipelines.provenance import (
    LedgerOfAnotherAccountError,
    LiveDataInSandboxError,
    SandboxDataInLiveError,
    account_of,
)
from integration_pipelines.syncs.engine import run_sync
from integration_pipelines.syncs.spec import SyncSpec
from integration_pipelines.warehouse.batches import records_to_table
from integration_pipelines.warehouse.duckdb import RowSource, Warehouse
from integration_pipelines.warehouse.spool import Spool

from .conftest import materialize_stream, warehouse_rows

# credentials, secrets and provenance (docs/security.md): part of the reliability suite, `pytest -m reliability`
pytestmark = pytest.mark.reliability

HUBSPOT_LIVE_TOKEN = "pat-FAKE-sandbox-read-write-0000"  # the emulator's read-write private app
STRIPE_LIVE_KEY = "sk_test_FAKE_sandbox_key_integration_pipelines"

VIP_SYNC = SyncSpec(
    name="vip_list_to_hubspot", title="VIP list → HubSpot", description="A hand-kept list, upserted by email.",
    source_sql="SELECT lower(email) AS email, name FROM main.vip_list", key="email", target="hubspot",
    mode="upsert", create_writer="upsert_contacts", update_writer="upsert_contacts",
    payload={"idProperty": "email", "id": "{email}", "properties": {"email": "{email}", "firstname": "{name}"}})


def host_of(url: str) -> str:
    return url.removeprefix("http://")


def vip_list(settings, *people: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(settings.warehouse_database) as con:
        con.execute("CREATE OR REPLACE TABLE main.vip_list (email VARCHAR, name VARCHAR)")
        con.executemany("INSERT INTO main.vip_list VALUES (?, ?)", [list(p) for p in people])


def live_hubspot(monkeypatch, url: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HUBSPOT_BASE_URL", url)
    monkeypatch.setenv("HUBSPOT_TOKEN", HUBSPOT_LIVE_TOKEN)


# -- raw rows ---------------------------------------------------------------------------------------------------


def stripe_events(settings, sandbox) -> None:  # type: ignore[no-untyped-def]
    """Three customers changed, then Stripe's change feed read: its events land in raw_stripe.events and their
    snapshots in raw_stripe.customers, two loads of one read."""
    sandbox.emulator("stripe").touch("customers", 3)
    materialize_stream(settings, "stripe", "events")


def test_every_raw_row_and_extract_says_its_mode_and_account(settings, sandbox, sandbox_server):
    stripe_events(settings, sandbox)
    materialize_stream(settings, "quickbooks", "customers")
    host = host_of(sandbox_server.url)
    tables = warehouse_rows(settings, "SELECT table_schema, table_name FROM information_schema.columns "
                                      "WHERE column_name = '_source_mode' AND starts_with(table_schema, 'raw_')")
    assert sorted(tables) == [("raw_quickbooks", "customers"), ("raw_stripe", "customers"), ("raw_stripe", "events")]
    for schema, table in tables:
        found = warehouse_rows(settings, f'SELECT DISTINCT _source_mode, _source_account FROM "{schema}"."{table}"')
        expected = f"{host} realm_id=9130350000000000" if schema == "raw_quickbooks" else host
        assert found == [("sandbox", expected)], (schema, table, found)
    assert warehouse_rows(settings, "SELECT DISTINCT system, source_mode, source_account FROM ops.extract_log "
                                    "ORDER BY 1") == [("quickbooks", "sandbox", f"{host} realm_id=9130350000000000"),
                                                      ("stripe", "sandbox", host)]


def test_the_account_is_never_a_secret(settings, sandbox_server):
    env = {"QUICKBOOKS_CLIENT_ID": "ABFAKEclient", "QUICKBOOKS_CLIENT_SECRET": "FAKE-qb-secret-77",
           "QUICKBOOKS_REFRESH_TOKEN": "FAKE-qb-refresh-77", "QUICKBOOKS_REALM_ID": "123146096291789",
           "SHOPIFY_SHOP": "acme-live", "SHOPIFY_ACCESS_TOKEN": "shpat_FAKE_live_88"}
    quickbooks = resolve_system(get_system("quickbooks"), settings, env)
    shopify = resolve_system(get_system("shopify"), settings, env)
    assert account_of(quickbooks) == "quickbooks.api.intuit.com realm_id=123146096291789"
    assert account_of(shopify) == "acme-live.myshopify.com"  # the shop is in the host already
    assert account_of(resolve_system(get_system("stripe"), settings)) == host_of(sandbox_server.url)
    for resolved in (quickbooks, shopify):
        assert not any(secret in account_of(resolved) for secret in env.values() if "FAKE" in secret)


def _spool(tmp_path: Path, records: list[dict], name: str) -> Spool:
    spool = Spool(tmp_path / "spools" / name)
    spool.write(records_to_table(records, source_system="pm_tool", primary_keys=[r["id"] for r in records],
                                 cursors=[None] * len(records), run_id=name, extracted_at=datetime.now(UTC),
                                 first_seq=0))
    return spool


def test_an_old_raw_table_gains_the_columns_and_its_old_rows_stay_unknown(tmp_path):
    database = str(tmp_path / "old.duckdb")
    with duckdb.connect(database) as con:  # a table loaded before rows recorded their source
        con.execute("CREATE SCHEMA raw_pm_tool")
        con.execute("CREATE TABLE raw_pm_tool.projects (_pk VARCHAR, _cursor VARCHAR, _source_system VARCHAR, "
                    "_extracted_at TIMESTAMPTZ, _run_id VARCHAR, _raw VARCHAR, _hash VARCHAR, _version TIMESTAMPTZ, "
                    "id VARCHAR, name VARCHAR)")
        con.execute("INSERT INTO raw_pm_tool.projects (_pk, _raw, id, name) VALUES ('p0', '{}', 'p0', 'Old')")
        con.execute("CREATE SCHEMA ops")
        con.execute("CREATE TABLE ops.extract_log (run_id VARCHAR, system VARCHAR, stream VARCHAR, "
                    "state_key VARCHAR, started_at TIMESTAMPTZ, finished_at TIMESTAMPTZ, pages BIGINT, "
                    "requests BIGINT, records BIGINT, inserted BIGINT, updated BIGINT, unchanged BIGINT, "
                    "cursor VARCHAR)")
    warehouse = Warehouse(database)
    records = [{"id": "p1", "name": "One"}, {"id": "p2", "name": "Two"}]
    source = RowSource("live", "pm.example.com")
    first = warehouse.load_spool(schema="raw_pm_tool", table="projects", files=_spool(tmp_path, records, "r1").files,
                                 state=None, run_id="r1", log_row={"run_id": "r1", "system": "pm_tool"},
                                 source=source)
    assert (first.inserted, first.updated) == (2, 0)
    with duckdb.connect(database, read_only=True) as con:
        rows = con.execute("SELECT _pk, _source_mode, _source_account FROM raw_pm_tool.projects ORDER BY 1").fetchall()
        logged = con.execute("SELECT source_mode, source_account FROM ops.extract_log").fetchall()
    assert rows == [("p0", None, None), ("p1", "live", "pm.example.com"), ("p2", "live", "pm.example.com")]
    assert logged == [("live", "pm.example.com")]

    # the same records, unchanged, read again from the same source: nothing is written
    again = warehouse.load_spool(schema="raw_pm_tool", table="projects", files=_spool(tmp_path, records, "r2").files,
                                 state=None, run_id="r2", source=source)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    # ... from another account: rewritten, so each row says where it was last read from
    moved = warehouse.load_spool(schema="raw_pm_tool", table="projects", files=_spool(tmp_path, records, "r3").files,
                                 state=None, run_id="r3", source=RowSource("sandbox", "127.0.0.1:8765"))
    assert (moved.inserted, moved.updated, moved.unchanged) == (0, 2, 0)
    # a load that does not say where its rows come from (a webhook batch today) leaves them unknown
    with warehouse.row_source(None):
        warehouse.load_spool(schema="raw_pm_tool", table="projects",
                             files=_spool(tmp_path, [{"id": "p3", "name": "Three"}], "r4").files, state=None,
                             run_id="r4")
    with duckdb.connect(database, read_only=True) as con:
        rows = con.execute("SELECT _pk, _source_mode, _source_account FROM raw_pm_tool.projects ORDER BY 1").fetchall()
    assert rows == [("p0", None, None), ("p1", "sandbox", "127.0.0.1:8765"), ("p2", "sandbox", "127.0.0.1:8765"),
                    ("p3", None, None)]


def test_sandbox_rows_refuse_a_live_write_even_when_the_extract_log_forgot_them(settings, sandbox, sandbox_server,
                                                                                  monkeypatch):
    """Stronger than the extract log: rows loaded in sandbox mode whose log rows are gone (pruned, or written by a
    change feed into another stream's table) still refuse a live write."""
    stripe_events(settings, sandbox)
    with duckdb.connect(settings.warehouse_database) as con:
        con.execute("DELETE FROM ops.extract_log")
        rows = sum(con.execute(f'SELECT count(*) FROM raw_stripe."{t}" WHERE _source_mode = \'sandbox\'').fetchone()[0]
                   for (t,) in con.execute("SELECT table_name FROM information_schema.tables "
                                           "WHERE table_schema = 'raw_stripe'").fetchall())
    live_hubspot(monkeypatch, sandbox_server.url)
    with pytest.raises(SandboxDataInLiveError) as caught:
        resolve_system(get_system("hubspot"), settings, purpose="write")
    assert str(caught.value) == (
        f"Refusing to write to the real HubSpot: the warehouse {settings.warehouse_database} holds data extracted "
        f"from the sandbox (stripe ({rows} raw rows)), and a sync would push those fake records into the real "
        "service. Use a fresh warehouse for live data (set IP_WAREHOUSE to a new file, or IP_DATA_DIR to a new "
        "folder) and extract from the real services into it, or, if the target is itself a test account and this "
        "is intended, set IP_ALLOW_SANDBOX_DATA_IN_LIVE=true.")


# -- and vice versa -----------------------------------------------------------------------------------------------


def test_live_rows_refuse_a_write_into_the_sandbox_and_a_plan_still_works(settings, sandbox, sandbox_server,
                                                                          monkeypatch):
    monkeypatch.setenv("STRIPE_BASE_URL", sandbox_server.url)
    monkeypatch.setenv("STRIPE_API_KEY", STRIPE_LIVE_KEY)
    stripe_events(settings, sandbox)  # read from the "real" Stripe
    vip_list(settings, ("ann@example.test", "Ann"))
    warehouse = Warehouse(settings.warehouse_database)
    planned = run_sync(VIP_SYNC, warehouse, settings, run_id="plan", dry_run=True)
    assert len(planned.plan.creates) == 1, "a dry run resolves nothing and sends nothing: always allowed"
    sandbox.state.clear_requests()
    with pytest.raises(LiveDataInSandboxError) as caught:
        run_sync(VIP_SYNC, warehouse, settings, run_id="run")
    message = str(caught.value)
    assert message.startswith(f"Refusing to write to HubSpot's sandbox: the warehouse {settings.warehouse_database} "
                              "holds data extracted from real services (stripe (1 extract, ")
    assert "set IP_DATA_DIR to a new folder (or IP_WAREHOUSE to a new file)" in message
    assert "sync plan NAME" in message and "\n" not in message
    assert [r for r in sandbox.state.request_log("hubspot") if r["method"] != "GET"] == []
    assert warehouse_rows(settings, "SELECT count(*) FROM sync.ledger") == [(0,)]


# -- ledger and journal -------------------------------------------------------------------------------------------


def test_ledger_entries_say_where_they_went_and_a_live_run_over_sandbox_ids_refuses(settings, sandbox_server,
                                                                                     monkeypatch):
    vip_list(settings, ("ann@example.test", "Ann"), ("bo@example.test", "Bo"))
    warehouse = Warehouse(settings.warehouse_database)
    assert run_sync(VIP_SYNC, warehouse, settings, run_id="sandbox-run").created == 2
    host = host_of(sandbox_server.url)
    assert warehouse_rows(settings, "SELECT record_key, target_system, target_mode, target_account, run_id "
                                    "FROM sync.ledger_targets ORDER BY 1") == [
        ("ann@example.test", "hubspot", "sandbox", host, "sandbox-run"),
        ("bo@example.test", "hubspot", "sandbox", host, "sandbox-run")]

    # HubSpot goes live; the data check is lifted on purpose (a test account fed from the sandbox), the ledger's
    # sandbox ids still refuse: the live run would take Ann and Bo as already in HubSpot
    live_hubspot(monkeypatch, sandbox_server.url)
    monkeypatch.setenv("IP_ALLOW_SANDBOX_DATA_IN_LIVE", "true")
    vip_list(settings, ("ann@example.test", "Ann"), ("bo@example.test", "Bo"), ("cy@example.test", "Cy"))
    with pytest.raises(LedgerOfAnotherAccountError) as caught:
        run_sync(VIP_SYNC, warehouse, settings, run_id="live-run")
    assert str(caught.value) == (
        f"Refusing to write to the real HubSpot ({host}): the sync ledger of the warehouse "
        f"{settings.warehouse_database} holds records that went to the sandbox ({host}) (vip_list_to_hubspot: 2). "
        "Their ids belong there, so a sync would take them as already in HubSpot here, send updates to ids this "
        "account does not have, and link new records to them. Start a clean data folder for the real services: "
        "set IP_DATA_DIR to a new folder (or IP_WAREHOUSE to a new file), extract into it and run the syncs there.")
    assert warehouse_rows(settings, "SELECT count(*) FROM sync.ledger WHERE record_key = 'cy@example.test'") == [(0,)]


def test_a_live_run_into_another_live_account_refuses_until_told_it_is_the_same(settings, sandbox_server,
                                                                                monkeypatch):
    live_hubspot(monkeypatch, sandbox_server.url)
    vip_list(settings, ("ann@example.test", "Ann"))
    warehouse = Warehouse(settings.warehouse_database)
    assert run_sync(VIP_SYNC, warehouse, settings, run_id="first").created == 1
    old = host_of(sandbox_server.url)
    # the same emulator under another name: to the ledger, another account
    monkeypatch.setenv("HUBSPOT_BASE_URL", sandbox_server.url.replace("127.0.0.1", "localhost"))
    new = old.replace("127.0.0.1", "localhost")
    vip_list(settings, ("ann@example.test", "Annie"))
    with pytest.raises(LedgerOfAnotherAccountError) as caught:
        run_sync(VIP_SYNC, warehouse, settings, run_id="second")
    message = str(caught.value)
    assert f"went to the real HubSpot at {old} (vip_list_to_hubspot: 1)" in message
    relabel = (f"UPDATE sync.ledger_targets SET target_account = '{new}' WHERE target_system = 'hubspot' AND "
               f"target_account = '{old}'")
    assert relabel in message
    with duckdb.connect(settings.warehouse_database) as con:
        con.execute(relabel)
    assert run_sync(VIP_SYNC, warehouse, settings, run_id="third").updated == 1
    assert warehouse_rows(settings, "SELECT target_account, run_id FROM sync.ledger_targets") == [(new, "third")]


def test_a_journaled_batch_says_where_it_goes_and_is_not_resent_elsewhere(settings, sandbox, sandbox_server,
                                                                          monkeypatch):
    vip_list(settings, ("ann@example.test", "Ann"))
    warehouse = Warehouse(settings.warehouse_database)
    httpx.put(f"{sandbox_server.url}/_sandbox/faults/hubspot", json={"error_rate": 1.0}).raise_for_status()
    try:
        failed = run_sync(VIP_SYNC, warehouse, settings, run_id="lost", sync_settings=None)
    except Exception:  # the run fails on the unanswered batch; the batch stays journaled
        failed = None
    finally:
        httpx.delete(f"{sandbox_server.url}/_sandbox/faults").raise_for_status()
    assert failed is None or failed.failed
    host = host_of(sandbox_server.url)
    assert warehouse_rows(settings, "SELECT record_key, target_system, target_mode, target_account "
                                    "FROM sync.pending") == [("ann@example.test", "hubspot", "sandbox", host)]
    live_hubspot(monkeypatch, sandbox_server.url)
    monkeypatch.setenv("IP_ALLOW_SANDBOX_DATA_IN_LIVE", "true")
    with pytest.raises(LedgerOfAnotherAccountError) as caught:
        run_sync(VIP_SYNC, warehouse, settings, run_id="live")
    assert "vip_list_to_hubspot: 1 journaled in sync.pending" in str(caught.value)


def test_an_old_ledger_and_journal_migrate_and_count_as_unknown(settings, sandbox_server, monkeypatch):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(settings.warehouse_database) as con:  # made before entries said where they went
        con.execute("CREATE SCHEMA sync")
        con.execute("""CREATE TABLE sync.ledger (sync_name VARCHAR NOT NULL, record_key VARCHAR NOT NULL,
            row_hash VARCHAR, external_id VARCHAR, status VARCHAR NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            last_error VARCHAR, last_synced_at TIMESTAMPTZ, last_run_id VARCHAR,
            PRIMARY KEY (sync_name, record_key))""")
        con.execute("""CREATE TABLE sync.pending (sync_name VARCHAR NOT NULL, record_key VARCHAR NOT NULL,
            operation VARCHAR NOT NULL, idempotency_key VARCHAR NOT NULL, position BIGINT NOT NULL, row_hash VARCHAR,
            external_id VARCHAR, row_json VARCHAR NOT NULL, run_id VARCHAR, journaled_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (sync_name, record_key))""")
        con.execute("INSERT INTO sync.ledger VALUES ('vip_list_to_hubspot', 'old@example.test', 'h', '901', "
                    "'synced', 0, NULL, now(), 'r0')")
    live_hubspot(monkeypatch, sandbox_server.url)
    vip_list(settings, ("ann@example.test", "Ann"))
    result = run_sync(VIP_SYNC, Warehouse(settings.warehouse_database), settings, run_id="after")
    assert result.created == 1, "an entry of unknown destination is not taken as a mismatch"
    assert warehouse_rows(settings, "SELECT record_key, target_mode FROM sync.ledger_targets ORDER BY 1") == [
        ("ann@example.test", "live")]
    columns = [c for (c,) in warehouse_rows(settings, "SELECT column_name FROM information_schema.columns "
                                                      "WHERE table_schema = 'sync' AND table_name = 'pending'")]
    assert columns[-3:] == ["target_system", "target_mode", "target_account"]
