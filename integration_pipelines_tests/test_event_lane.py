"""The event lane's own rules, without a running Dagster: which syncs a batch runs and in what order, one sync
at a time across processes, and a sync busy elsewhere is sent later instead of waited for."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from integration_pipelines.locks import LockTimeoutError, exclusive, lock_path
from integration_pipelines.settings import Settings
from integration_pipelines.syncs.engine import run_sync
from integration_pipelines.syncs.registry import discover_syncs
from integration_pipelines.syncs.spec import SyncSpec
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.webhooks.landing import LocalLandingStore
from integration_pipelines.webhooks.lane import EventLane, affected_syncs, direct_syncs
from integration_pipelines.webhooks.receiver import envelope


def spec(name: str, sources: tuple[tuple[str, ...], ...], depends_on: tuple[str, ...] = ()) -> SyncSpec:
    return SyncSpec(name=name, title=name, description=name, source_sql="SELECT 1 AS k", source_assets=sources,
                    key="k", target="hubspot", mode="insert", create_writer="w", payload={}, depends_on=depends_on)


def test_a_batch_runs_the_syncs_that_read_what_changed_and_those_that_depend_on_them_in_order():
    customers = spec("customers_to_books", (("core", "customers"),))
    invoices = spec("invoices_to_books", (("core", "invoices"),), depends_on=("customers_to_books",))
    payments = spec("payments_to_books", (("core", "payments"),), depends_on=("invoices_to_books",))
    leads = spec("leads_to_crm", (("webhooks", "events"),))
    stock = spec("stock_to_shop", (("core", "inventory"),))
    everything = [payments, stock, leads, invoices, customers]  # not in dependency order on purpose
    chosen = affected_syncs(everything, {("core", "customers"), ("webhooks", "events")})
    assert [s.name for s in chosen] == ["leads_to_crm", "customers_to_books", "invoices_to_books",
                                        "payments_to_books"]
    assert [s.name for s in affected_syncs(everything, {("core", "invoices")})] == ["invoices_to_books",
                                                                                     "payments_to_books"]
    assert affected_syncs(everything, {("core", "deals")}) == []


def test_one_process_at_a_time_per_sync(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, warehouse=str(tmp_path / "w.duckdb"))
    form_leads = next(s for s in discover_syncs() if s.name == "form_leads_to_hubspot")
    with exclusive(lock_path(tmp_path, "sync-form_leads_to_hubspot")), pytest.raises(LockTimeoutError):
        # another process (here: another open file description) runs the sync: we do not run it beside it
        run_sync(form_leads, Warehouse(settings.warehouse_database), settings, run_id="r", lock_timeout=0)


def test_a_sync_busy_in_another_run_is_sent_later_not_waited_for(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, warehouse=str(tmp_path / "w.duckdb"))
    store = LocalLandingStore(tmp_path)
    body = json.dumps({"submission_id": "s1", "email": "ada@example.test"}).encode()
    received = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    store.land("forms", "2026-03-10", "s1", envelope("forms", "s1", "form", received, {}, body))
    leads = spec("leads_to_crm", (("forms", "submissions"),))
    calls: list[float] = []

    def busy_then_free(sync: SyncSpec, *args: object, lock_timeout: float, **kwargs: object) -> object:
        calls.append(lock_timeout)
        if len(calls) == 1:
            raise LockTimeoutError("held by the nightly run")
        return None

    lane = EventLane(store, Warehouse(settings.warehouse_database), settings, systems=[], syncs=[leads],
                     batch_files=10, run_id="r", sync_runner=busy_then_free)
    outcome = lane.process(lane.next_batch() or "")
    assert [(s.name, s.skipped) for s in outcome.syncs] == [("leads_to_crm", "busy in another run; retried shortly")]
    assert list(lane.deferred) == ["leads_to_crm"]
    retried = lane.retry_deferred()
    assert [s.name for s in retried] == ["leads_to_crm"] and lane.deferred == {}
    assert calls == [0, 0], "the lane never waits for a sync lock while it holds the warehouse"


NOTICES = {  # each provider's own notice shape, as its docs show it
    "hubspot": ("contacts", [{"eventId": 7001, "subscriptionType": "contact.propertyChange", "objectId": 1,
                              "propertyName": "email", "occurredAt": 1773144000000}]),
    "xero": ("invoices", {"events": [{"resourceId": "x", "eventCategory": "INVOICE", "eventType": "UPDATE",
                                      "tenantId": "t", "eventDateUtc": "2026-03-10T12:00:00"}]}),
    "quickbooks": ("payments", {"eventNotifications": [{"realmId": "1", "dataChangeEvent": {"entities": [
        {"name": "Payment", "id": "1", "operation": "Create", "lastUpdated": "2026-03-10T12:00:00Z"}]}}]}),
    "odoo": ("partners", {"_model": "res.partner", "_id": 1, "_action": "write"}),
    # a workflow rule's outbound message on Case (SOAP `notifications`, as Salesforce sends it)
    "salesforce": ("cases", (
        b'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        b'envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns="'
        b'http://soap.sforce.com/2005/09/outbound"><OrganizationId>00D000000000001AAA</OrganizationId><ActionId>'
        b'04k000000000001AAA</ActionId><Notification><Id>04l000000000001AAA</Id><sObject xsi:type="sf:Case" '
        b'xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>500000000000001AAA</sf:Id><sf:Status>Escalated'
        b'</sf:Status></sObject></Notification></notifications></soapenv:Body></soapenv:Envelope>')),
}


@pytest.mark.parametrize("provider", sorted(NOTICES))
def test_a_change_notice_makes_the_lane_read_the_stream_it_names(settings, sandbox, provider):
    """HubSpot, Xero, QuickBooks, Salesforce and Odoo say "this changed" without the record: the lane reads the
    named stream through the system's read spec, so the warehouse holds what the provider holds right after the
    notice."""
    stream, notice = NOTICES[provider]
    store = LocalLandingStore(settings.data_dir)
    body = notice if isinstance(notice, bytes) else json.dumps(notice).encode()
    received = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert store.land(provider, "2026-03-10", f"n-{provider}", envelope(provider, f"n-{provider}", "notice", received,
                                                                       {}, body))
    lane = EventLane(store, Warehouse(settings.warehouse_database), settings, systems=[(provider, "any")], syncs=[],
                     batch_files=10, run_id="notice-run")
    outcome = lane.process(lane.next_batch() or "")
    assert [r.split(" ")[:2] for r in outcome.refreshed] == [[f"{provider}/{stream}", "read:"]], outcome.refreshed
    truth = sandbox.emulator(provider).dump(stream)
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        loaded = con.execute(f'SELECT count(*) FROM raw_{provider}."{stream}"').fetchone()[0]
    assert loaded == len(truth) > 0, "the stream the notice named is in the warehouse, as the provider holds it"


def test_a_hubspot_deal_notice_reads_the_deals_and_their_contacts(settings, sandbox):
    """A deal notice (here `deal.associationChange`: a rep linked another contact) re-reads both the deals and the
    deal → contact associations, which HubSpot's search read of changed deals does not return."""
    store = LocalLandingStore(settings.data_dir)
    body = json.dumps([{"eventId": 7002, "subscriptionType": "deal.associationChange", "objectId": 1,
                        "occurredAt": 1773144000000}]).encode()
    received = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert store.land("hubspot", "2026-03-10", "n-deal", envelope("hubspot", "n-deal", "notice", received, {}, body))
    lane = EventLane(store, Warehouse(settings.warehouse_database), settings, systems=[("hubspot", "any")], syncs=[],
                     batch_files=10, run_id="notice-run")
    outcome = lane.process(lane.next_batch() or "")
    assert sorted(r.split(" ")[0] for r in outcome.refreshed) == ["hubspot/deal_contacts", "hubspot/deals"]
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw_hubspot.deal_contacts").fetchone()[0] == 25  # the world's deals


def test_a_notice_for_a_system_this_deployment_does_not_read_is_kept_and_nothing_is_read(settings, sandbox):
    store = LocalLandingStore(settings.data_dir)
    body = json.dumps({"events": [{"eventCategory": "INVOICE", "eventType": "UPDATE"}]}).encode()
    store.land("xero", "2026-03-10", "n-1", envelope("xero", "n-1", "notice", datetime.now(UTC), {}, body))
    lane = EventLane(store, Warehouse(settings.warehouse_database), settings, systems=[("stripe", "payments")],
                     syncs=[], batch_files=10, run_id="r")
    outcome = lane.process(lane.next_batch() or "")
    assert outcome.refreshed == [] and sandbox.state.request_log("xero") == []


def test_syncs_that_read_only_what_the_events_brought_go_first():
    customers = spec("customers_to_books", (("core", "customers"),))
    leads = spec("leads_to_crm", (("forms", "submissions"),))
    follow_up = spec("lead_tasks", (("forms", "submissions"),), depends_on=("customers_to_books",))
    stock = spec("stock_to_shop", (("odoo", "products"),))
    ordered = [customers, leads, follow_up, stock]
    assert [s.name for s in direct_syncs(ordered)] == ["leads_to_crm", "stock_to_shop"]


def _one_form_landed(tmp_path: Path) -> tuple[Settings, LocalLandingStore]:
    """A new warehouse and a landing store holding one web-form post: a batch whose syncs read forms/submissions."""
    settings = Settings(data_dir=tmp_path, warehouse=str(tmp_path / "w.duckdb"))
    store = LocalLandingStore(tmp_path)
    body = json.dumps({"submission_id": "s1", "email": "ada@example.test"}).encode()
    store.land("forms", "2026-03-10", "s1", envelope("forms", "s1", "form", datetime(2026, 3, 10, 12, tzinfo=UTC),
                                                     {}, body))
    return settings, store


def test_the_syncs_tables_exist_before_syncs_first_run_side_by_side(tmp_path: Path):
    """On a new warehouse every sync would create the `sync` schema itself; two doing so at once fail with DuckDB's
    "Catalog write-write conflict on create with 'sync'" (the demo's first minute: a lead sync failed and alerted).
    The lane makes them once before it runs syncs side by side."""
    settings, store = _one_form_landed(tmp_path)
    form = (("forms", "submissions"),)
    seen: list[int] = []

    def runner(sync: SyncSpec, warehouse: Warehouse, *args: object, **kwargs: object) -> None:
        with warehouse.connect() as con:
            seen.append(con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'sync' "
                                    "AND table_name IN ('ledger', 'runs', 'attempts', 'starts')").fetchone()[0])

    lane = EventLane(store, Warehouse(settings.warehouse_database), settings, systems=[],
                     syncs=[spec("leads_to_crm", form), spec("leads_to_mailer", form).model_copy(
                         update={"target": "mailer"})], batch_files=10, run_id="r", sync_runner=runner,
                     sync_workers=4)
    outcome = lane.process(lane.next_batch() or "")
    assert [s.error for s in outcome.syncs] == ["", ""] and seen == [4, 4]

def test_syncs_into_different_targets_run_at_once_one_writer_per_target_and_dependencies_first(tmp_path: Path):
    """Two syncs into different targets meet at a barrier (they could not, one after another); two into the
    same target never overlap; a sync waits for the one it depends on. Each writes through the lane's warehouse
    from its own thread (a cursor of the batch's connection), and every write is there afterwards."""
    import threading

    settings, store = _one_form_landed(tmp_path)
    form = (("forms", "submissions"),)
    to_crm = spec("leads_to_crm", form)
    to_mailer = spec("leads_to_mailer", form).model_copy(update={"target": "mailer"})
    crm_notes = spec("notes_to_crm", form)  # same target as leads_to_crm: never beside it
    mailer_tags = spec("tags_to_mailer", form, depends_on=("leads_to_mailer",)).model_copy(update={"target": "mailer"})
    met = threading.Barrier(2, timeout=20)
    lock = threading.Lock()
    running: dict[str, int] = {}
    overlaps: list[str] = []
    order: list[str] = []

    def runner(sync: SyncSpec, warehouse: Warehouse, *args: object, **kwargs: object) -> None:
        with lock:
            running[sync.target] = running.get(sync.target, 0) + 1
            if running[sync.target] > 1:
                overlaps.append(sync.name)
            order.append(f"start {sync.name}")
        try:
            if sync.name in ("leads_to_crm", "leads_to_mailer"):
                met.wait()  # raises BrokenBarrierError (an error outcome) if the two do not run at once
            with warehouse.connect() as con:
                con.execute("CREATE TABLE IF NOT EXISTS main.calls (name VARCHAR)")
                con.execute("INSERT INTO main.calls VALUES (?)", [sync.name])
        finally:
            with lock:
                running[sync.target] -= 1
                order.append(f"end {sync.name}")

    with duckdb.connect(settings.warehouse_database) as con:  # created first: the threads only append
        con.execute("CREATE TABLE main.calls (name VARCHAR)")
    lane = EventLane(store, Warehouse(settings.warehouse_database), settings, systems=[],
                     syncs=[to_crm, crm_notes, to_mailer, mailer_tags], batch_files=10, run_id="r",
                     sync_runner=runner, sync_workers=4)
    outcome = lane.process(lane.next_batch() or "")
    assert [(s.name, s.error) for s in outcome.syncs] == [
        ("leads_to_crm", ""), ("notes_to_crm", ""), ("leads_to_mailer", ""), ("tags_to_mailer", "")]
    assert overlaps == []
    assert order.index("start tags_to_mailer") > order.index("end leads_to_mailer")
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        assert sorted(r[0] for r in con.execute("SELECT name FROM main.calls").fetchall()) == [
            "leads_to_crm", "leads_to_mailer", "notes_to_crm", "tags_to_mailer"]
