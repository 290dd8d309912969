"""The event lane's own rules, without a running Dagster: which syncs a batch runs and in what order, one sync
at a time across processes, and a sync busy elsewhere is sent later instead of waited for."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from integration_pipelines.locks import LockTimeoutError, exclusive, lock_path
from integration_pipelines.settings import Settings
from integration_pipelines.syncs.engine import run_sync
from integration_pipelines.syncs.registry import discover_syncs
from integration_pipelines.syncs.spec import SyncSpec
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.webhooks.landing import LocalLandingStore
from integration_pipelines.webhooks.lane import EventLane, affected_syncs
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
