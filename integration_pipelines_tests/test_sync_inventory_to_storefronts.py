"""Scenario 12: ERP stock → Shopify and Square stock by SKU, over real HTTP against the sandbox."""

from __future__ import annotations

import pytest

from integration_pipelines.sandbox.odoo import _now

from .conftest import materialize_stream, warehouse_rows
from .test_core_models import build
from .test_syncs import posts_to, sync


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")


#: only the streams core.inventory reads (a full extract of three systems would double the test time)
STOCK_STREAMS = (("odoo", "products"), ("shopify", "products"), ("shopify", "inventory_levels"),
                 ("square", "catalog_items"), ("square", "inventory_counts"))


def extract(settings, streams=STOCK_STREAMS) -> None:
    for system, stream in streams:
        materialize_stream(settings, system, stream)
#: ERP counts that differ from what the storefronts show, so the first run has something to set
ERP_COUNTS = {"CABLE": 190, "GADGET": 151, "WIDGET-L": 0, "WIDGET-S": 142}


def set_odoo_stock(sandbox, sku: str, quantity: float) -> None:
    """A stock count in the ERP (inventory mode on stock.quant, as Odoo does it)."""
    odoo = sandbox.emulator("odoo")
    with odoo.sandbox.lock:
        pid = next(p["id"] for p in odoo.records["product.product"].values() if p["default_code"] == sku)
        odoo._set_quant(pid, float(quantity), _now())


def square_batches(sandbox) -> list[dict]:
    return [r for r in posts_to(sandbox, "square") if r["path"] == "/v2/inventory/changes/batch-create"]


def prepare(settings, sandbox, counts=ERP_COUNTS):
    for sku, quantity in counts.items():
        set_odoo_stock(sandbox, sku, quantity)
    extract(settings)
    build(settings)


def shopify_levels(sandbox) -> dict[str, int]:
    shopify = sandbox.emulator("shopify")
    sku_of = {v["inventory_item_id"]: v["sku"] for p in shopify.dump("products") for v in p["variants"]}
    return {sku_of[lvl["inventory_item_id"]]: lvl["available"] for lvl in shopify.dump("inventory_levels")}


def square_counts(sandbox) -> dict[str, str]:
    square = sandbox.emulator("square")
    sku_of = {v["id"]: v["item_variation_data"]["sku"] for i in square.dump("catalog_items")
              for v in i["item_data"]["variations"]}
    return {sku_of[c["catalog_object_id"]]: c["quantity"] for c in square.dump("inventory_counts")}


def assert_storefronts_match(sandbox, counts=ERP_COUNTS) -> None:
    levels, square = shopify_levels(sandbox), square_counts(sandbox)
    for sku, quantity in counts.items():
        assert levels[sku] == quantity, sku
        assert square[sku] == str(quantity), sku


def test_erp_stock_reaches_both_storefronts_and_a_rerun_sends_nothing(settings, sandbox):
    prepare(settings, sandbox)
    untouched = {sku: q for sku, q in shopify_levels(sandbox).items() if sku not in ERP_COUNTS}
    shop, square = sync(settings, "inventory_to_shopify"), sync(settings, "inventory_to_square")
    assert (shop.created, shop.failed) == (len(ERP_COUNTS), 0)
    assert (square.created, square.failed) == (len(ERP_COUNTS), 0)
    assert_storefronts_match(sandbox)
    # SKUs the ERP does not stock (services) are left alone
    assert {sku: shopify_levels(sandbox)[sku] for sku in untouched} == untouched
    assert len(square_batches(sandbox)) == 1, "Square takes the four counts in one batch"

    sandbox.state.clear_requests()
    for name in ("inventory_to_shopify", "inventory_to_square"):
        counts = sync(settings, name).plan.counts()
        assert counts["creates"] == counts["updates"] == 0 and counts["unchanged"] == len(ERP_COUNTS)
    assert posts_to(sandbox, "shopify") == [] and posts_to(sandbox, "square") == []


def test_a_later_stock_change_pushes_only_that_sku(settings, sandbox):
    prepare(settings, sandbox)
    sync(settings, "inventory_to_shopify")
    sync(settings, "inventory_to_square")
    # a delivery is counted in the ERP; the extract and core models pick it up
    set_odoo_stock(sandbox, "GADGET", 175)
    extract(settings, (("odoo", "products"),))
    build(settings)
    sandbox.state.clear_requests()
    shop, square = sync(settings, "inventory_to_shopify"), sync(settings, "inventory_to_square")
    assert shop.plan.counts()["updates"] == 1 and shop.updated == 1
    assert square.plan.counts()["updates"] == 1 and square.updated == 1
    assert [r.key for r in shop.plan.updates] == ["shopify:GADGET"]
    sent = posts_to(sandbox, "shopify")
    assert len(sent) == 1 and sent[0]["path"].endswith("/inventory_levels/set.json")
    assert len(square_batches(sandbox)) == 1
    changes = sandbox.emulator("square").inventory_changes
    assert changes[-1]["physical_count"]["quantity"] == "175"
    assert_storefronts_match(sandbox, {**ERP_COUNTS, "GADGET": 175})


def test_faults_end_in_the_same_stock_without_duplicate_changes(settings, sandbox, monkeypatch):
    prepare(settings, sandbox)
    for system, seed in (("shopify", 3), ("square", 1)):
        monkeypatch.setenv(f"{system.upper()}_MAX_RETRIES", "12")
        sandbox.set_faults(system, error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                           methods=["POST", "PUT", "PATCH"], seed=seed)
    shop, square = sync(settings, "inventory_to_shopify"), sync(settings, "inventory_to_square")
    faulted = {s: any(r["fault"] for r in sandbox.state.request_log(s)) for s in ("shopify", "square")}
    sandbox.clear_faults()
    assert shop.failed == square.failed == 0
    assert_storefronts_match(sandbox)
    assert faulted == {"shopify": True, "square": True}
    # Square: a replayed batch (same idempotency_key) is not applied twice: one change per SKU
    changed = [c["physical_count"]["catalog_object_id"] for c in sandbox.emulator("square").inventory_changes]
    assert len(changed) == len(set(changed)) == len(ERP_COUNTS)


def test_one_invalid_stock_fails_alone(settings, sandbox):
    prepare(settings, sandbox, {**ERP_COUNTS, "WIDGET-L": -3})  # oversold in the ERP: Square refuses < 0
    square = sync(settings, "inventory_to_square")
    assert (square.created, square.failed) == (3, 1)
    errors = warehouse_rows(settings, "SELECT record_key, operation, message FROM sync.errors")
    assert errors[0][:2] == ("square:WIDGET-L", "create") and "non-negative" in errors[0][2]
    assert square_counts(sandbox)["WIDGET-L"] != "-3"
    for sku in ("CABLE", "GADGET", "WIDGET-S"):
        assert square_counts(sandbox)[sku] == str(ERP_COUNTS[sku])


def test_dry_run_sends_nothing_then_an_item_gone_from_shopify_fails_alone(settings, sandbox):
    prepare(settings, sandbox)
    sandbox.state.clear_requests()
    for name, system in (("inventory_to_shopify", "shopify"), ("inventory_to_square", "square")):
        plan = sync(settings, name, dry_run=True)
        assert plan.plan.counts()["creates"] == len(ERP_COUNTS) and plan.created == 0
        assert sandbox.state.request_log(system) == []
    assert plan.samples[0]["payload"]["physical_count"]["state"] == "IN_STOCK"
    shopify = sandbox.emulator("shopify")
    gone = next(v["inventory_item_id"] for p in shopify.dump("products") for v in p["variants"] if v["sku"] == "CABLE")
    with shopify.sandbox.lock:
        del shopify.records["inventory_levels"][gone]
    result = sync(settings, "inventory_to_shopify")
    assert (result.created, result.failed) == (3, 1)
    assert warehouse_rows(settings, "SELECT record_key, message FROM sync.errors")[0][0] == "shopify:CABLE"
    assert {k: v for k, v in shopify_levels(sandbox).items() if k in ERP_COUNTS} == {
        k: v for k, v in ERP_COUNTS.items() if k != "CABLE"}


@pytest.mark.parametrize("name", ["inventory_to_shopify", "inventory_to_square"])
def test_mode_is_upsert_keyed_by_storefront_and_sku(name):
    from integration_pipelines.syncs.registry import get_sync

    spec = get_sync(name)
    assert spec.mode == "upsert" and spec.key == "stock_key"


# -- which ERP's count: one ERP of record per SKU, configured; ambiguity waits instead of being summed ----------
ALL_STOCK_STREAMS = (*STOCK_STREAMS, ("sap", "material_stock"), ("netsuite", "inventory_items"),
                     ("legacy_erp", "stock_levels"))


def erp_stock(settings, name: str = "inventory_to_shopify") -> dict[str, tuple]:
    """The sync's per-SKU choice as its plan computes it: sku → (erp_of_record, quantity, waiting_reason)."""
    from integration_pipelines.syncs.catalog.inventory_to_storefronts import ERP_STOCK
    from integration_pipelines.syncs.engine import load_sync_settings
    from integration_pipelines.syncs.registry import get_sync
    from integration_pipelines.warehouse.duckdb import Warehouse

    with Warehouse(settings.warehouse_database).connect() as con:
        load_sync_settings(con, get_sync(name))
        rows = con.execute(f"SELECT sku, erp_of_record, quantity, waiting_reason FROM ({ERP_STOCK})").fetchall()
    return {sku: (erp, quantity, reason) for sku, erp, quantity, reason in rows}


def test_each_sku_gets_its_erp_of_record_count_and_nothing_is_added_across_erps(settings, sandbox, monkeypatch):
    monkeypatch.setenv("IP_STOCK_ROUTES", "GADGET=netsuite; CABLE=legacy_erp:MAIN+EAST ;WIDGET-L=sap:1010/101A")
    for sku, quantity in ERP_COUNTS.items():  # Odoo counts every SKU differently from the other ERPs
        set_odoo_stock(sandbox, sku, quantity)
    legacy = sandbox.emulator("legacy_erp")
    for warehouse, on_hand in (("MAIN", 100), ("EAST", 20), ("WEST", 5000)):  # WEST does not supply the shops
        legacy.simulate("stock_levels", {"sku": "CABLE", "warehouse": warehouse, "onHand": on_hand})
    extract(settings, ALL_STOCK_STREAMS)
    build(settings)
    shop, square = sync(settings, "inventory_to_shopify"), sync(settings, "inventory_to_square")
    assert shop.failed == square.failed == 0
    expected = {"WIDGET-S": 142,  # Odoo, the default ERP of record
                "GADGET": 146,  # NetSuite's on-hand (its items hold the world's count), not Odoo's 151
                "CABLE": 120,  # the legacy ERP's MAIN (100) and EAST (20), not WEST, not Odoo's 190
                "WIDGET-L": 30}  # SAP's plant 1010, storage location 101A, not Odoo's 0
    assert_storefronts_match(sandbox, expected)
    # services: the default ERP (Odoo) keeps no stock for them, NetSuite and the legacy ERP do: a finding, not sent
    chosen = erp_stock(settings)
    for sku in ("SERVICE-HR", "SUPPORT-Y"):
        erp, quantity, reason = chosen[sku]
        assert (erp, quantity) == ("odoo", None)
        assert "odoo (the ERP of record) holds no stock record" in reason and "legacy_erp, netsuite" in reason
    assert shop.plan.counts()["waiting"] == square.plan.counts()["waiting"] == 2
    # acknowledged by the operator: `SKU=none` leaves the shop's own count alone and the finding goes away
    monkeypatch.setenv("IP_STOCK_ROUTES", "GADGET=netsuite;CABLE=legacy_erp:MAIN+EAST;WIDGET-L=sap:1010/101A;"
                                          "SERVICE-HR=none;SUPPORT-Y=none")
    assert sync(settings, "inventory_to_shopify", dry_run=True).plan.counts()["waiting"] == 0


def test_a_sku_its_erp_of_record_holds_twice_waits_instead_of_being_summed(settings, sandbox):
    odoo = sandbox.emulator("odoo")
    with odoo.sandbox.lock:  # a second Odoo product with GADGET as internal reference (Odoo does not forbid it)
        original = next(p for p in odoo.records["product.product"].values() if p["default_code"] == "GADGET")
        pid = odoo._new_id("product.product")
        odoo.records["product.product"][pid] = {**original, "id": pid, "name": "Gadget (old)"}
        odoo._set_quant(pid, 7.0, _now())
    prepare(settings, sandbox)
    result = sync(settings, "inventory_to_shopify")
    assert result.failed == 0 and result.plan.counts()["waiting"] == 1
    erp, quantity, reason = erp_stock(settings)["GADGET"]
    assert erp == "odoo" and quantity is None
    assert "odoo holds GADGET more than once at WH/Stock (2 records)" in reason
    assert shopify_levels(sandbox)["GADGET"] == 146, "the shop keeps its count; 151 + 7 is never sent"
    levels = shopify_levels(sandbox)
    assert {k: levels[k] for k in ("CABLE", "WIDGET-L", "WIDGET-S")} == {"CABLE": 190, "WIDGET-L": 0, "WIDGET-S": 142}


def test_sap_stock_is_no_longer_taken_silently_when_odoo_lacks_a_sku(settings, sandbox, monkeypatch):
    """Before, SAP's count stood in whenever Odoo had no record of a SKU (not read yet, archived, renamed), so a
    shop's stock could jump between two ERPs' counts. Now SAP counts where it is the configured ERP of record."""
    extract(settings, (("sap", "material_stock"), ("shopify", "products"), ("shopify", "inventory_levels")))
    build(settings)
    before = shopify_levels(sandbox)
    assert sync(settings, "inventory_to_shopify").plan.counts()["waiting"] == 4  # Odoo is not read: nothing sent
    assert shopify_levels(sandbox) == before
    assert "held by sap" in erp_stock(settings)["CABLE"][2]
    monkeypatch.setenv("IP_STOCK_ERP", "sap")
    monkeypatch.setenv("IP_STOCK_ROUTES", "CABLE=sap:1010/101A")
    sandbox.emulator("sap").touch("material_stock", 1)  # a goods receipt of 5 CABLE into 101A (207 → 212)
    extract(settings, (("sap", "material_stock"),))
    build(settings)
    result = sync(settings, "inventory_to_shopify")
    assert result.failed == 0
    levels = shopify_levels(sandbox)
    assert levels["CABLE"] == 212, "101A only: 207 + 5 (101B's 1 is not named)"
    assert (levels["GADGET"], levels["WIDGET-L"], levels["WIDGET-S"]) == (146, 30, 138)  # every storage location


@pytest.mark.parametrize(("routes", "erp", "message"), [
    ("GADGET=quickbooks", "odoo", 'IP_STOCK_ROUTES: GADGET=quickbooks: "quickbooks" is not an ERP of record'),
    ("GADGET=netsuite;GADGET=sap", "odoo", "IP_STOCK_ROUTES routes the SKU GADGET more than once"),
    ("GADGET", "odoo", 'IP_STOCK_ROUTES: "GADGET" is not SKU=erp'),
    ("", "shopify", 'IP_STOCK_ERP=shopify: "shopify" is not an ERP of record'),
])
def test_a_route_that_names_no_erp_stops_the_sync_naming_the_variable(settings, sandbox, monkeypatch, routes, erp,
                                                                      message):
    monkeypatch.setenv("IP_STOCK_ROUTES", routes)
    monkeypatch.setenv("IP_STOCK_ERP", erp)
    extract(settings, (("odoo", "products"), ("shopify", "products"), ("shopify", "inventory_levels")))
    build(settings)
    with pytest.raises(Exception, match=message.replace("(", r"\(")):
        sync(settings, "inventory_to_shopify", dry_run=True)
    assert posts_to(sandbox, "shopify") == []
