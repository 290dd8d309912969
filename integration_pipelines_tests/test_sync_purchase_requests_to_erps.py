"""Scenario 13 per ERP: approved procurement-portal requests, routed by supplier, become purchase orders in NetSuite
(SOAP upsert by externalId), the legacy ERP (SOAP create by poNumber) and SAP (OData create with CSRF), exactly
once: read back through each ERP's own API, unchanged by a rerun, and a lost answer ends linked, not duplicated."""

from __future__ import annotations

import duckdb
import pytest

from integration_pipelines.connectors.registry import get_system
from integration_pipelines.connectors.runtime import build_client, resolve_system
from integration_pipelines.connectors.soap import build_soap_client
from integration_pipelines.syncs.catalog.purchase_requests_routes import ERPS, routed_requests
from integration_pipelines.syncs.engine import SyncFailedError, load_sync_settings, plan_sync
from integration_pipelines.syncs.ledger import ensure_ledger
from integration_pipelines.syncs.registry import check_syncs, discover_syncs, get_sync
from integration_pipelines.warehouse.duckdb import Warehouse

from .conftest import materialize_all_partitions, warehouse_rows
from .test_sync_purchase_requests_to_odoo import add_request
from .test_syncs import posts_to, sync

ROUTES = "Northwind Supplies=netsuite; contoso components = legacy_erp;Fabrikam Parts=sap"
COMMON = "urn:common_2024_2.platform.webservices.netsuite.com"


@pytest.fixture(autouse=True)
def routes(settings, monkeypatch):
    monkeypatch.setenv("IP_PURCHASE_ORDERS_ROUTES", ROUTES)
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")


def plant(sandbox) -> dict[str, str]:
    """One request per ERP (and a second for NetSuite), estimated at 12.50 a unit: request id → supplier."""
    planted = {}
    for sku, quantity, supplier in (("WIDGET-S", 40, "Northwind Supplies"), ("CABLE", 25, "Contoso Components"),
                                    ("GADGET", 12, "Fabrikam Parts"), ("WIDGET-L", 60, "Northwind Supplies")):
        planted[add_request(sandbox, sku, quantity, supplier)] = supplier
    return planted


def approved_for(sandbox, supplier: str) -> dict[str, dict]:
    return {r["id"]: r for r in sandbox.emulator("procurement_portal").objects["purchase_requests"].values()
            if r["status"] == "approved" and r["supplier"] == supplier}


def extract(settings, *streams: tuple[str, str]) -> None:
    for system, stream in (("procurement_portal", "purchase_requests"), *streams):
        materialize_all_partitions(settings, system, stream)


def ledger(settings, name: str) -> dict[str, tuple[str, str]]:
    return {k: (ext, status) for k, ext, status in warehouse_rows(
        settings, "SELECT record_key, external_id, status FROM sync.ledger WHERE sync_name = ?", [name])}


# -- NetSuite ------------------------------------------------------------------------------------------------------
def netsuite_orders(settings) -> dict[str, list[dict]]:
    """Every purchase order NetSuite holds, by externalId, read through its SOAP `search` (and searchMoreWithId)."""
    search = {"searchRecord": {"_type": f"{{{COMMON}}}TransactionSearchBasic",
                               "type": {"operator": "anyOf", "searchValue": ["_purchaseOrder"]}}}
    found: dict[str, list[dict]] = {}
    with build_soap_client(resolve_system(get_system("netsuite"), settings)) as client:
        answer = client.call("search", search, {"searchPreferences": {"bodyFieldsOnly": False, "pageSize": 200}})
        assert answer["status"]["isSuccess"] and answer["totalPages"] == 1
        for record in answer["recordList"]["record"]:
            found.setdefault(record.get("externalId"), []).append(record)
    return found


def assert_netsuite_orders(settings, sandbox, planted: dict[str, str]) -> None:
    orders = netsuite_orders(settings)
    items = {r["internalId"]: r["itemId"] for r in sandbox.emulator("netsuite").dump("inventory_items")}
    expected = approved_for(sandbox, "Northwind Supplies")
    assert {k for k, v in planted.items() if v == "Northwind Supplies"} <= set(expected)
    ids = ledger(settings, "purchase_requests_to_netsuite")
    assert set(ids) == set(expected)
    for request_id, request in expected.items():
        (order,) = orders[request_id]  # exactly one
        assert order["entity"]["internalId"] == "801"  # NetSuite's vendor "Northwind Supplies"
        assert order["memo"] == f"Purchase request {request_id}, needed by {request['needed_by']}"
        (line,) = order["itemList"]["item"]
        assert items[line["item"]["internalId"]] == request["sku"]
        assert line["quantity"] == request["quantity"]
        assert float(line["rate"]) == pytest.approx(round(request["estimated_total_minor"] / request["quantity"]
                                                          / 100, 2))
        assert ids[request_id] == (order["internalId"], "synced")
    # the other suppliers' requests are not NetSuite's business
    assert not set(orders) & (set(approved_for(sandbox, "Contoso Components")) | set(approved_for(
        sandbox, "Fabrikam Parts")))


def test_netsuite_receives_its_requests_once(settings, sandbox):
    planted = plant(sandbox)
    for request_id in planted:
        assert planted[request_id] != "Northwind Supplies" or request_id not in netsuite_orders(settings)
    extract(settings, ("netsuite", "purchase_orders"), ("netsuite", "inventory_items"))
    result = sync(settings, "purchase_requests_to_netsuite")
    assert result.failed == 0 and result.created == len(approved_for(sandbox, "Northwind Supplies")) >= 2
    assert_netsuite_orders(settings, sandbox, planted)

    sandbox.state.clear_requests()
    again = sync(settings, "purchase_requests_to_netsuite")
    assert again.plan.counts()["creates"] == 0 and posts_to(sandbox, "netsuite") == []
    assert_netsuite_orders(settings, sandbox, planted)


def test_netsuite_lost_answers_end_synced_not_duplicated(settings, sandbox, monkeypatch):
    planted = plant(sandbox)
    extract(settings, ("netsuite", "purchase_orders"), ("netsuite", "inventory_items"))
    monkeypatch.setenv("NETSUITE_MAX_RETRIES", "2")
    # NetSuite applies every upsert, and every answer is lost (a 5xx SOAP fault, or the connection cut)
    sandbox.set_faults("netsuite", apply_then_fail_rate=1.0, retry_after=0, seed=3)
    with pytest.raises(SyncFailedError):
        sync(settings, "purchase_requests_to_netsuite")
    sandbox.clear_faults()
    applied = netsuite_orders(settings)
    assert all(len(applied[k]) == 1 for k in approved_for(sandbox, "Northwind Supplies"))
    assert warehouse_rows(settings, "SELECT count(*) FROM sync.pending")[0][0] == len(
        approved_for(sandbox, "Northwind Supplies"))
    result = sync(settings, "purchase_requests_to_netsuite")  # re-sent by externalId: NetSuite finds its orders
    assert result.resumed == len(approved_for(sandbox, "Northwind Supplies")) and result.failed == 0
    assert_netsuite_orders(settings, sandbox, planted)


# -- legacy ERP ----------------------------------------------------------------------------------------------------
def erp_orders(settings) -> dict[str, dict]:
    """The ERP's purchase orders, read through its SOAP GetPurchaseOrders (paged)."""
    found: dict[str, dict] = {}
    with build_soap_client(resolve_system(get_system("legacy_erp"), settings)) as client:
        page = 1
        while True:
            answer = client.call("GetPurchaseOrders", {"page": page, "pageSize": 100})
            for order in (answer["purchaseOrders"] or {}).get("purchaseOrder") or []:
                assert order["poNumber"] not in found
                found[order["poNumber"]] = order
            if page >= answer["totalPages"]:
                return found
            page += 1


def assert_erp_orders(settings, sandbox) -> None:
    orders = erp_orders(settings)
    expected = approved_for(sandbox, "Contoso Components")
    assert ledger(settings, "purchase_requests_to_legacy_erp") == {k: (k, "synced") for k in expected}
    for request_id, request in expected.items():
        order = orders[request_id]
        assert order["supplier"] == "Contoso Components" and order["warehouse"] == "MAIN"
        assert order["status"] == "OPEN" and order["currency"] == "USD"
        assert order["orderDate"] == request["updated_at"][:10]
        (line,) = order["lines"]["line"]
        assert (line["sku"], line["quantity"]) == (request["sku"], request["quantity"])
        assert float(line["unitPrice"]) == pytest.approx(round(request["estimated_total_minor"]
                                                              / request["quantity"] / 100, 2))
    assert not set(orders) & (set(approved_for(sandbox, "Northwind Supplies")) | set(approved_for(
        sandbox, "Fabrikam Parts")))


def test_legacy_erp_receives_its_requests_once(settings, sandbox):
    planted = plant(sandbox)
    assert not set(planted) & set(erp_orders(settings))
    extract(settings)
    result = sync(settings, "purchase_requests_to_legacy_erp")
    assert result.failed == 0 and result.created == len(approved_for(sandbox, "Contoso Components")) >= 1
    assert_erp_orders(settings, sandbox)
    sandbox.state.clear_requests()
    again = sync(settings, "purchase_requests_to_legacy_erp")
    assert again.plan.counts()["creates"] == 0 and posts_to(sandbox, "legacy_erp") == []
    assert_erp_orders(settings, sandbox)


def test_legacy_erp_lost_answers_end_synced_not_duplicated(settings, sandbox, monkeypatch):
    plant(sandbox)
    extract(settings)
    creates_before = sandbox.emulator("legacy_erp").creates
    monkeypatch.setenv("LEGACY_ERP_MAX_RETRIES", "2")
    sandbox.set_faults("legacy_erp", apply_then_fail_rate=1.0, apply_then_fail_kind="drop", seed=4)
    with pytest.raises(SyncFailedError):
        sync(settings, "purchase_requests_to_legacy_erp")
    sandbox.clear_faults()
    expected = approved_for(sandbox, "Contoso Components")
    assert sandbox.emulator("legacy_erp").creates == creates_before + len(expected)  # applied, answers lost
    result = sync(settings, "purchase_requests_to_legacy_erp")  # re-sent by poNumber: the ERP answers `exists`
    assert result.resumed == len(expected) and result.failed == 0
    assert sandbox.emulator("legacy_erp").creates == creates_before + len(expected)
    assert_erp_orders(settings, sandbox)


# -- SAP -----------------------------------------------------------------------------------------------------------
SAP_SUPPLIERS = "Northwind Supplies=17300001;Contoso Components=17300002;Fabrikam Parts=17300003"
PO_SERVICE = "/sap/opu/odata/sap/API_PURCHASEORDER_PROCESS_SRV"


def sap_orders(settings) -> dict[str, list[dict]]:
    """SAP's purchase orders with their items and schedule lines, by Our Reference, through OData GETs."""
    found: dict[str, list[dict]] = {}
    with build_client(resolve_system(get_system("sap"), settings)) as client:
        answer = client.request("GET", f"{PO_SERVICE}/A_PurchaseOrder", params={
            "$format": "json", "$expand": "to_PurchaseOrderItem", "$top": "500"}).json()
        for order in answer["d"]["results"]:
            for item in order["to_PurchaseOrderItem"]["results"]:
                where = (f"PurchasingDocument eq '{order['PurchaseOrder']}' and "
                         f"PurchasingDocumentItem eq '{item['PurchaseOrderItem']}'")
                item["schedule"] = client.request("GET", f"{PO_SERVICE}/A_PurchaseOrderScheduleLine", params={
                    "$format": "json", "$filter": where}).json()["d"]["results"]
            found.setdefault(order["CorrespncInternalReference"], []).append(order)
    return found


def day_ms(day: str) -> str:
    from datetime import UTC, datetime

    return f"/Date({int(datetime.fromisoformat(day[:10]).replace(tzinfo=UTC).timestamp() * 1000)})/"


def assert_sap_orders(settings, sandbox, status: str = "synced") -> None:
    orders = sap_orders(settings)
    expected = approved_for(sandbox, "Fabrikam Parts")
    ids = ledger(settings, "purchase_requests_to_sap")
    assert set(ids) == set(expected)
    for request_id, request in expected.items():
        (order,) = orders[request_id]  # exactly one
        assert (order["Supplier"], order["PurchaseOrderType"], order["CompanyCode"]) == ("17300003", "NB", "1010")
        assert (order["PurchasingOrganization"], order["PurchasingGroup"]) == ("1010", "001")
        assert order["PurchaseOrderDate"] == day_ms(request["updated_at"])
        (item,) = order["to_PurchaseOrderItem"]["results"]
        assert (item["Material"], item["Plant"]) == (request["sku"], "1010")
        assert float(item["OrderQuantity"]) == request["quantity"]
        assert float(item["NetPriceAmount"]) == pytest.approx(round(request["estimated_total_minor"]
                                                                   / request["quantity"] / 100, 2))
        (line,) = item["schedule"]
        assert line["ScheduleLineDeliveryDate"] == day_ms(request["needed_by"])
        assert ids[request_id] == (order["PurchaseOrder"], status)
    assert not set(orders) & (set(approved_for(sandbox, "Northwind Supplies")) | set(approved_for(
        sandbox, "Contoso Components")))


def test_sap_receives_its_requests_once(settings, sandbox, monkeypatch):
    plant(sandbox)
    extract(settings)
    waiting = sync(settings, "purchase_requests_to_sap", dry_run=True)  # no supplier numbers configured yet
    assert waiting.plan.counts()["creates"] == 0 and waiting.plan.waiting == len(approved_for(sandbox,
                                                                                              "Fabrikam Parts"))
    monkeypatch.setenv("IP_PURCHASE_ORDERS_SAP_SUPPLIERS", SAP_SUPPLIERS)
    result = sync(settings, "purchase_requests_to_sap")
    assert result.failed == 0 and result.created == len(approved_for(sandbox, "Fabrikam Parts")) >= 1
    assert_sap_orders(settings, sandbox)
    sandbox.state.clear_requests()
    again = sync(settings, "purchase_requests_to_sap")
    assert again.plan.counts()["creates"] == 0 and posts_to(sandbox, "sap") == []
    assert_sap_orders(settings, sandbox)


def test_sap_lost_answer_is_looked_up_and_linked_not_duplicated(settings, sandbox, monkeypatch):
    plant(sandbox)
    extract(settings)
    monkeypatch.setenv("IP_PURCHASE_ORDERS_SAP_SUPPLIERS", SAP_SUPPLIERS)
    # SAP stores each order and its answer is lost (a 5xx); the lookups (GET) are answered
    sandbox.set_faults("sap", apply_then_fail_rate=1.0, methods=["POST"], seed=5)
    result = sync(settings, "purchase_requests_to_sap")
    sandbox.clear_faults()
    expected = approved_for(sandbox, "Fabrikam Parts")
    assert (result.created, result.linked, result.failed, result.in_doubt) == (0, len(expected), 0, 0)
    assert_sap_orders(settings, sandbox, status="linked")
    sandbox.state.clear_requests()
    assert sync(settings, "purchase_requests_to_sap").plan.counts()["creates"] == 0
    assert posts_to(sandbox, "sap") == []
    assert_sap_orders(settings, sandbox, status="linked")


# -- routing -------------------------------------------------------------------------------------------------------
def routed(settings) -> dict[str, list[str]]:
    """request id → the ERPs whose sync source holds it (each sync's source, with its settings, as it plans)."""
    found: dict[str, list[str]] = {}
    with Warehouse(settings.warehouse_database).connect() as con:
        ensure_ledger(con)
        for erp in ERPS:
            spec = get_sync(f"purchase_requests_to_{erp}")
            load_sync_settings(con, spec)
            for (key,) in con.execute(f"WITH {routed_requests(erp)} SELECT request_id FROM requests").fetchall():
                found.setdefault(key, []).append(erp)
    return found


def test_each_request_is_routed_to_exactly_one_erp(settings, sandbox, monkeypatch):
    plant(sandbox)
    extract(settings)
    portal = [r for r in sandbox.emulator("procurement_portal").objects["purchase_requests"].values()
              if r["status"] == "approved"]
    expected = {"Northwind Supplies": "netsuite", "Contoso Components": "legacy_erp", "Fabrikam Parts": "sap"}
    assert routed(settings) == {r["id"]: [expected[r["supplier"]]] for r in portal}
    monkeypatch.delenv("IP_PURCHASE_ORDERS_ROUTES")  # nothing configured: Odoo, as before routing
    assert routed(settings) == {r["id"]: ["odoo"] for r in portal}
    monkeypatch.setenv("IP_PURCHASE_ORDERS_TARGET", "sap")
    assert routed(settings) == {r["id"]: ["sap"] for r in portal}
    # a request an ERP already holds stays there when the route changes
    sent = portal[0]["id"]
    with Warehouse(settings.warehouse_database).connect() as con:
        con.execute("INSERT INTO sync.ledger VALUES ('purchase_requests_to_odoo', ?, NULL, '7', 'synced', 0, NULL, "
                    "now(), 'r')", [sent])
    assert routed(settings) == {r["id"]: ["sap"] for r in portal if r["id"] != sent}
    monkeypatch.setenv("IP_PURCHASE_ORDERS_ROUTES", "Northwind Supplies=quickbooks")
    with Warehouse(settings.warehouse_database).connect() as con, pytest.raises(
            duckdb.Error, match="IP_PURCHASE_ORDERS_ROUTES: Northwind Supplies=quickbooks does not name an ERP"):
        plan_sync(con, get_sync("purchase_requests_to_legacy_erp"))
    monkeypatch.setenv("IP_PURCHASE_ORDERS_ROUTES", "Contoso Components=sap;contoso components=legacy_erp")
    with Warehouse(settings.warehouse_database).connect() as con, pytest.raises(
            duckdb.Error, match="lists the supplier contoso components more than once"):
        plan_sync(con, get_sync("purchase_requests_to_legacy_erp"))


# -- the registry ----------------------------------------------------------------------------------------------------
def test_the_registry_refuses_a_sync_whose_writer_or_target_does_not_exist():
    netsuite = get_sync("purchase_requests_to_netsuite")
    assert check_syncs([(netsuite, "a.py"), (get_sync("purchase_requests_to_sap"), "b.py")])  # SOAP and REST
    wrong_writer = netsuite.model_copy(update={"create_writer": "create_purchase_order"})
    with pytest.raises(ValueError, match=r"catalog/po\.py: sync purchase_requests_to_netsuite names "
                       r"create_writer='create_purchase_order', which netsuite does not have; its writers \(REST "
                       r"and SOAP\): \['upsert_purchase_order'\]"):
        check_syncs([(wrong_writer, "integration_pipelines/syncs/catalog/po.py")])
    wrong_target = netsuite.model_copy(update={"target": "netsuit"})
    with pytest.raises(ValueError, match=r"po\.py: sync purchase_requests_to_netsuite targets 'netsuit', which is "
                       "not a system"):
        check_syncs([(wrong_target, "integration_pipelines/syncs/catalog/po.py")])
    assert {s.name for s in discover_syncs()} >= {f"purchase_requests_to_{erp}" for erp in ERPS}
