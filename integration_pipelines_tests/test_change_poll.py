"""S12 for the ERPs without webhooks: a stock change made in NetSuite (an InventoryAdjustment through SuiteTalk) or in
the legacy ERP (a count booked in its screens, the sandbox's control route) reaches Shopify and Square through the
change poll and the event lane, read back through the storefronts' own APIs. Driven here without a running
Dagster: the sensor's evaluation (`poll_system`) and the lane worker's batch (`EventLane.process`) are called as
they run there; test_change_poll_live.py does the same through a running Dagster."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import dagster as dg
import httpx
import pytest

from integration_pipelines.connectors.errors import ConfigurationError
from integration_pipelines.connectors.netsuite import SYSTEM as NETSUITE
from integration_pipelines.connectors.registry import discover_systems
from integration_pipelines.connectors.runtime import resolve_system
from integration_pipelines.connectors.soap import build_soap_client
from integration_pipelines.definitions import build_definitions
from integration_pipelines.sandbox.shopify import API_ROOT as SHOPIFY_API
from integration_pipelines.sandbox.shopify import SANDBOX_ACCESS_TOKEN as SHOPIFY_TOKEN
from integration_pipelines.sandbox.square import SANDBOX_ACCESS_TOKEN as SQUARE_TOKEN
from integration_pipelines.syncs.registry import get_sync
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.webhooks.change_poll import ChangePollSettings, build_change_poll_sensors, poll_system
from integration_pipelines.webhooks.landing import LocalLandingStore
from integration_pipelines.webhooks.lane import EventLane

from .conftest import materialize_stream
from .test_core_models import build
from .test_syncs import posts_to, sync

INVENTORY = "urn:inventory_2024_2.transactions.webservices.netsuite.com"
STOCK_STREAMS = (("odoo", "products"), ("netsuite", "inventory_items"), ("legacy_erp", "stock_levels"),
                 ("shopify", "products"), ("shopify", "inventory_levels"), ("square", "catalog_items"),
                 ("square", "inventory_counts"))
#: GADGET's stock is kept in NetSuite and CABLE's in the legacy ERP's MAIN warehouse; the rest in Odoo (the default)
ROUTES = "GADGET=netsuite;CABLE=legacy_erp:MAIN"


@pytest.fixture(autouse=True)
def routes(settings, monkeypatch):
    monkeypatch.setenv("IP_STOCK_ROUTES", ROUTES)


def adjust_in_netsuite(settings, item_id: str, by: float, external_id: str | None = None) -> dict:
    """A stock count in NetSuite as a user's integration or a SuiteTalk client makes it: `add` InventoryAdjustment."""
    record = {"_type": f"{{{INVENTORY}}}InventoryAdjustment",
              "account": {"internalId": "212"}, "adjLocation": {"internalId": "1"}, "memo": "cycle count",
              "inventoryList": {"inventory": [{"item": {"internalId": item_id}, "location": {"internalId": "1"},
                                               "adjustQtyBy": by}]}}
    if external_id:
        record["externalId"] = external_id
    with build_soap_client(resolve_system(NETSUITE, settings, purpose="write")) as client:
        return client.call("add", {"record": record})  # the writeResponse: status, baseRef


def count_in_legacy_erp(sandbox_url: str, sku: str, warehouse: str, on_hand: int) -> dict:
    """A stock count booked in the legacy ERP's own screens (its web service writes no stock)."""
    answer = httpx.post(f"{sandbox_url}/_sandbox/legacy_erp/stock_levels/simulate",
                        json={"sku": sku, "warehouse": warehouse, "onHand": on_hand})
    assert answer.status_code == 200, answer.text
    return answer.json()


def shopify_available(sandbox_url: str, sandbox, sku: str) -> list[int]:
    item = next(v["inventory_item_id"] for p in sandbox.emulator("shopify").dump("products") for v in p["variants"]
                if v["sku"] == sku)
    levels = httpx.get(f"{sandbox_url}{SHOPIFY_API}/inventory_levels.json", params={"inventory_item_ids": str(item)},
                       headers={"x-shopify-access-token": SHOPIFY_TOKEN}).json()["inventory_levels"]
    return [level["available"] for level in levels]


def square_quantity(sandbox_url: str, sandbox, sku: str) -> list[str]:
    variation = next(v["id"] for i in sandbox.emulator("square").dump("catalog_items")
                     for v in i["item_data"]["variations"] if v["item_variation_data"]["sku"] == sku)
    counts = httpx.post(f"{sandbox_url}/v2/inventory/counts/batch-retrieve", json={"catalog_object_ids": [variation]},
                        headers={"authorization": f"Bearer {SQUARE_TOKEN}", "square-version": "2025-10-16"}
                        ).json()["counts"]
    return [c["quantity"] for c in counts]


def lane(settings) -> EventLane:
    return EventLane(LocalLandingStore(settings.data_dir), Warehouse(settings.warehouse_database), settings,
                     systems=[(s.name, s.category) for s in discover_systems()],
                     syncs=[get_sync("inventory_to_shopify"), get_sync("inventory_to_square")], batch_files=50,
                     run_id="lane-test")


def drain(worker: EventLane) -> list:
    outcomes = []
    while (batch := worker.next_batch()) is not None:
        outcomes.append(worker.process(batch))
    return outcomes


def stocked(settings) -> None:
    """What the business had when it switched the poll on: the stock streams read, core built, stock pushed once."""
    for system, stream in STOCK_STREAMS:
        materialize_stream(settings, system, stream)
    build(settings)
    for name in ("inventory_to_shopify", "inventory_to_square"):
        assert sync(settings, name).failed == 0


def test_stock_changes_in_netsuite_and_the_legacy_erp_reach_shopify_and_square(settings, sandbox):
    stocked(settings)
    url = settings.sandbox_url
    store = LocalLandingStore(settings.data_dir)
    # the first ticks: the ERPs asked "what changed?" before anything did; NetSuite's answer is remembered
    states = {name: poll_system(name, settings, store, {}).state for name in ("netsuite", "legacy_erp")}
    assert store.list("landing") == []
    # NetSuite holds 146 GADGET (the world's count); a delivery of 54 is booked as an inventory adjustment
    assert adjust_in_netsuite(settings, "202", 54)["status"]["isSuccess"] is True
    # the legacy ERP's MAIN warehouse counts 77 CABLE
    count_in_legacy_erp(url, "CABLE", "MAIN", 77)
    for name in ("netsuite", "legacy_erp"):
        outcome = poll_system(name, settings, store, states[name])
        assert outcome.errors == [] and len(outcome.landed) == 1, outcome
        states[name] = outcome.state
    assert sorted(ref.provider for ref in store.list("landing")) == ["legacy_erp", "netsuite"]
    outcomes = drain(lane(settings))
    assert sorted(r.split(" ")[0] for o in outcomes for r in o.refreshed) == ["legacy_erp/stock_levels",
                                                                             "netsuite/inventory_items"]
    assert shopify_available(url, sandbox, "GADGET") == [200]
    assert square_quantity(url, sandbox, "GADGET") == ["200"]
    assert shopify_available(url, sandbox, "CABLE") == [77]
    assert square_quantity(url, sandbox, "CABLE") == ["77"]
    # asked again, nothing new: nothing landed, nothing sent
    sandbox.state.clear_requests()
    for name in ("netsuite", "legacy_erp"):
        assert poll_system(name, settings, store, states[name]).landed == []
    assert drain(lane(settings)) == [] and posts_to(sandbox, "shopify") == posts_to(sandbox, "square") == []


def test_the_same_change_found_twice_is_announced_once_and_written_once(settings, sandbox):
    stocked(settings)
    store = LocalLandingStore(settings.data_dir)
    before = poll_system("netsuite", settings, store, {}).state
    adjust_in_netsuite(settings, "202", 54)
    first = poll_system("netsuite", settings, store, before)
    assert len(first.landed) == 1
    # a tick that landed its notice but died before Dagster kept its cursor runs again from the old cursor: the
    # same announcement, which the landing store has landed before
    again = poll_system("netsuite", settings, store, before)
    assert again.announced == {"inventory_items": 1} and again.landed == []
    # the next tick, from the kept cursor, finds the change again inside its lookback and recognises it
    assert poll_system("netsuite", settings, store, first.state).announced == {}
    drain(lane(settings))
    assert shopify_available(settings.sandbox_url, sandbox, "GADGET") == [200]
    # and should a second poller (a copy of the deployment, a reset cursor) announce it under another id, the lane
    # reads NetSuite again, nothing changed, and the ledgers send nothing
    sandbox.state.clear_requests()
    now = datetime.now(UTC)
    body = json.dumps({"source": "change_poll", "stream": "inventory_items", "changes": 1}).encode()
    from integration_pipelines.webhooks.receiver import envelope

    assert store.land("netsuite", now.date().isoformat(), "second-poller",
                      envelope("netsuite", "second-poller", "change_poll.inventory_items", now, {}, body))
    [outcome] = drain(lane(settings))
    assert [r.split(":")[0] for r in outcome.refreshed] == ["netsuite/inventory_items read"]
    assert all(s.result is None or (s.result.created, s.result.updated) == (0, 0) for s in outcome.syncs)
    assert posts_to(sandbox, "shopify") == [] and posts_to(sandbox, "square") == []


def test_while_a_notice_waits_no_other_lands_for_its_stream_and_its_read_sees_every_change(settings, sandbox):
    """Backpressure: the lane is away (a long batch, a restart) while stock keeps moving; one notice waits per
    stream, and the read it causes, later, sees everything."""
    store = LocalLandingStore(settings.data_dir)
    state = poll_system("netsuite", settings, store, {}).state
    adjust_in_netsuite(settings, "202", 54)  # GADGET 146 → 200
    first = poll_system("netsuite", settings, store, state)
    adjust_in_netsuite(settings, "200", 2)  # WIDGET-S 138 → 140
    second = poll_system("netsuite", settings, store, first.state)
    assert len(first.landed) == 1 and second.announced == {"inventory_items": 1} and second.landed == []
    assert len(store.list("landing")) == 1
    worker = EventLane(store, Warehouse(settings.warehouse_database), settings,
                       systems=[("netsuite", "erp")], syncs=[], batch_files=50, run_id="lane-test")
    drain(worker)
    import duckdb

    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        on_hand = dict(con.execute("SELECT sku, quantity FROM core.inventory WHERE source_system = 'netsuite'"
                                   ).fetchall())
    assert (on_hand["GADGET"], on_hand["WIDGET-S"]) == (200, 140)
    # the lane took it: the next change is announced again
    adjust_in_netsuite(settings, "202", -1)
    assert len(poll_system("netsuite", settings, store, second.state).landed) == 1


def test_an_item_edit_is_a_change_too_and_a_failing_erp_keeps_its_cursor(settings, sandbox):
    store = LocalLandingStore(settings.data_dir)
    state = poll_system("netsuite", settings, store, {}).state
    sandbox.set_faults("netsuite", error_rate=1.0, seed=1)
    failed = poll_system("netsuite", settings, store, state)
    assert len(failed.errors) == 2 and failed.state == state and failed.landed == []
    sandbox.clear_faults()
    sandbox.emulator("netsuite").touch("inventory_items", 1)  # an item record edited (and its count bumped)
    edited = poll_system("netsuite", settings, store, state)
    assert edited.errors == [] and edited.announced == {"inventory_items": 1} and len(edited.landed) == 1


def test_sap_stock_has_no_change_time_so_its_snapshot_is_compared(settings, sandbox):
    store = LocalLandingStore(settings.data_dir)
    baseline = poll_system("sap", settings, store, {})
    assert baseline.errors == [] and baseline.landed == [], "the first answer is only remembered"
    assert poll_system("sap", settings, store, baseline.state).landed == []
    sandbox.emulator("sap").touch("material_stock", 1)  # a goods receipt of 5
    changed = poll_system("sap", settings, store, baseline.state)
    assert changed.announced == {"material_stock": 1} and len(changed.landed) == 1
    notice = json.loads(json.loads(store.read(store.list("landing")[0]))["body"])
    assert notice["source"] == "change_poll" and notice["stream"] == "material_stock"


def test_the_poll_runs_for_enabled_erps_without_webhooks_only(settings, monkeypatch):
    systems = discover_systems()
    names = lambda config, chosen: [s.name.removesuffix("_change_poll") for s in build_change_poll_sensors(  # noqa: E731
        [s for s in systems if s.name in chosen], settings, config)]
    assert sorted(names(ChangePollSettings(), {"odoo", "netsuite", "sap", "legacy_erp", "shopify"})) == [
        "legacy_erp", "netsuite", "sap"]
    assert names(ChangePollSettings(), {"odoo", "shopify"}) == []  # Odoo sends webhooks; Shopify is no ERP
    assert names(ChangePollSettings(change_poll_seconds=0), {"netsuite"}) == []
    assert names(ChangePollSettings(change_poll_systems="netsuite"), {"netsuite", "sap"}) == ["netsuite"]
    with pytest.raises(ConfigurationError, match="odoo"):
        names(ChangePollSettings(change_poll_systems="odoo"), {"odoo"})
    [sensor] = build_change_poll_sensors([s for s in systems if s.name == "legacy_erp"], settings,
                                         ChangePollSettings(change_poll_seconds=7))
    assert sensor.minimum_interval_seconds == 7 and sensor.default_status == dg.DefaultSensorStatus.RUNNING
    monkeypatch.setenv("IP_ENABLED_SYSTEMS", "netsuite,shopify")
    defs = build_definitions()
    assert [s.name for s in defs.sensors if s.name.endswith("_change_poll")] == ["netsuite_change_poll"]


def test_the_sensor_keeps_its_cursor_in_dagster(settings, sandbox):
    [sensor] = build_change_poll_sensors([NETSUITE], settings, ChangePollSettings())
    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=None))
        assert first.run_requests == [] and json.loads(first.cursor)["inventory_items/stock_movements"]["since"]
        adjust_in_netsuite(settings, "202", 1)
        second = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert "1 change(s) announced" in (second.skip_message or "")
    assert [ref.provider for ref in LocalLandingStore(settings.data_dir).list("landing")] == ["netsuite"]
