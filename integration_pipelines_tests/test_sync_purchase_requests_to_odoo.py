"""Scenario 13: approved procurement-portal requests → Odoo purchase orders, exactly once (origin = request id)."""

from __future__ import annotations

import pytest

from integration_pipelines.syncs.engine import SyncFailedError
from integration_pipelines.warehouse.duckdb import Warehouse

from .conftest import materialize_all_partitions, warehouse_rows
from .test_core_models import build
from .test_syncs import posts_to, sync


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")


STREAMS = (("procurement_portal", "purchase_requests"), ("odoo", "partners"), ("odoo", "products"),
           ("odoo", "purchase_orders"))
VENDOR = {"Northwind Supplies": "Northwind Components Ltd", "Contoso Components": "Contoso Supply Co",
          "Fabrikam Parts": "Fabrikam Industrial Inc"}


def extract(settings, streams=STREAMS) -> None:
    for system, stream in streams:
        materialize_all_partitions(settings, system, stream)


def add_request(sandbox, sku: str, quantity: int, supplier: str, needed_by: str = "2026-03-30") -> str:
    portal = sandbox.emulator("procurement_portal")
    with portal.sandbox.lock:
        record = portal._add({"requester_email": "buyer@example.com", "supplier": supplier, "sku": sku,
                              "description": sku, "quantity": quantity, "estimated_total_minor": 1250 * quantity,
                              "currency": "USD", "status": "approved", "needed_by": needed_by,
                              "created_at": "2026-03-09T08:00:00Z", "updated_at": "2026-03-09T08:00:00Z"})
    return record["id"]


def prepare(settings, sandbox, bad: bool = False) -> list[str]:
    planted = [add_request(sandbox, sku, q, s) for sku, q, s in (
        ("WIDGET-S", 40, "Northwind Supplies"), ("CABLE", 25, "Contoso Components"),
        ("GADGET", 12, "Fabrikam Parts"), ("WIDGET-L", 60, "Northwind Supplies"))]
    if bad:  # a needed-by date that does not exist: Odoo refuses the order
        planted.append(add_request(sandbox, "CABLE", 5, "Fabrikam Parts", needed_by="2026-02-30"))
    extract(settings)
    build(settings)
    return planted


def approved(sandbox) -> dict[str, dict]:
    return {r["id"]: r for r in sandbox.emulator("procurement_portal").objects["purchase_requests"].values()
            if r["status"] == "approved"}


def orders_by_origin(sandbox) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for order in sandbox.emulator("odoo").dump("purchase_orders"):
        found.setdefault(order["origin"], []).append(order)
    return found


def assert_one_order_per_request(sandbox, skip: tuple[str, ...] = ()) -> None:
    odoo = sandbox.emulator("odoo")
    orders = orders_by_origin(sandbox)
    sku_of = {p["id"]: p["default_code"] for p in odoo.dump("products")}
    for request_id, request in approved(sandbox).items():
        if request_id in skip:
            assert request_id not in orders
            continue
        assert len(orders[request_id]) == 1, f"{request_id}: exactly one purchase order"
        order = orders[request_id][0]
        assert order["partner_id"][1] == VENDOR[request["supplier"]] and order["state"] == "draft"
        assert order["date_planned"] == f"{request['needed_by']} 12:00:00"
        assert order["date_order"] == request["updated_at"].replace("T", " ").rstrip("Z")
        (line,) = [odoo.lines[i] for i in order["order_line"]]
        assert sku_of[line["product_id"]] == request["sku"] and line["qty"] == request["quantity"]


def test_approved_requests_become_one_purchase_order_each(settings, sandbox):
    planted = prepare(settings, sandbox)
    before = len(sandbox.emulator("odoo").dump("purchase_orders"))
    result = sync(settings, "purchase_requests_to_odoo")
    assert result.failed == 0 and result.created == len(approved(sandbox)) >= len(planted)
    assert len(sandbox.emulator("odoo").dump("purchase_orders")) == before + result.created
    assert_one_order_per_request(sandbox)
    ids = dict(warehouse_rows(settings, "SELECT record_key, external_id FROM sync.ledger"))
    assert all(orders_by_origin(sandbox)[k][0]["id"] == int(v) for k, v in ids.items())
    # pending, rejected and already-ordered requests are not the ERP's business yet
    assert not set(orders_by_origin(sandbox)) & {r["id"] for r in sandbox.emulator(
        "procurement_portal").objects["purchase_requests"].values() if r["status"] != "approved"}

    sandbox.state.clear_requests()
    assert sync(settings, "purchase_requests_to_odoo").plan.counts()["creates"] == 0
    assert posts_to(sandbox, "odoo") == []


def test_a_create_sent_again_is_refused_not_duplicated(settings, sandbox):
    prepare(settings, sandbox)
    first = sync(settings, "purchase_requests_to_odoo")
    # the ledger loses its bookkeeping (a crash after the write): the same creates go out again
    with Warehouse(settings.warehouse_database).connect() as con:
        con.execute("DELETE FROM sync.ledger WHERE sync_name = 'purchase_requests_to_odoo'")
    with pytest.raises(SyncFailedError, match="already exists"):
        sync(settings, "purchase_requests_to_odoo")
    assert_one_order_per_request(sandbox)
    # after the next Odoo extract the orders are found by origin: nothing is created, nothing is sent
    extract(settings, (("odoo", "purchase_orders"),))
    build(settings)
    sandbox.state.clear_requests()
    again = sync(settings, "purchase_requests_to_odoo")
    # (matched before create: linked in the ledger with the order's id, nothing sent)
    assert again.plan.counts()["creates"] == 0 and again.plan.counts()["linked"] == first.created
    assert posts_to(sandbox, "odoo") == []


def test_faults_end_in_the_same_orders_without_duplicates(settings, sandbox, monkeypatch):
    prepare(settings, sandbox)
    monkeypatch.setenv("ODOO_MAX_RETRIES", "12")
    sandbox.set_faults("odoo", error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                       methods=["POST", "PUT", "PATCH"], seed=2)
    result = sync(settings, "purchase_requests_to_odoo")
    faulted = any(r["fault"] for r in sandbox.state.request_log("odoo"))
    sandbox.clear_faults()
    assert faulted and result.failed == 0 and result.created == len(approved(sandbox))
    assert_one_order_per_request(sandbox)


def test_dry_run_sends_nothing_then_one_invalid_request_fails_alone(settings, sandbox):
    planted = prepare(settings, sandbox, bad=True)
    sandbox.state.clear_requests()
    plan = sync(settings, "purchase_requests_to_odoo", dry_run=True)
    assert plan.plan.counts()["creates"] == len(approved(sandbox)) and plan.created == 0
    assert sandbox.state.request_log("odoo") == []
    args = plan.samples[0]["payload"]["params"]["args"]
    assert args[:3] == ["<db>", "<uid>", "<api_key>"] and args[3:5] == ["purchase.order", "create"]
    result = sync(settings, "purchase_requests_to_odoo")
    assert result.failed == 1 and result.created == len(approved(sandbox)) - 1
    assert result.failed / (result.created + result.failed) <= 0.25
    errors = warehouse_rows(settings, "SELECT record_key, operation, message FROM sync.errors")
    assert errors[0][:2] == (planted[-1], "create") and "day is out of range" in errors[0][2]
    assert_one_order_per_request(sandbox, skip=(planted[-1],))
