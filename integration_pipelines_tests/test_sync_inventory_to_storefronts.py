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
