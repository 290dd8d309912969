"""Odoo end to end over real HTTP: JSON-RPC login → execute_kw search_read pages → DuckDB, incremental reads
on `write_date`, Odoo's errors-inside-200 surfacing readably, and the writes an outbound sync makes
(purchase orders, stock levels) staying single under retries. Odoo publishes no official Python SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from integration_pipelines.connectors.errors import ApiError
from integration_pipelines.connectors.http import HttpClient
from integration_pipelines.connectors.odoo import (
    SYSTEM,
    create_purchase_order_once,
    raise_for_rpc_error,
    rpc_body,
    write,
    writer_record,
)
from integration_pipelines.connectors.runtime import ResolvedSystem, build_client, resolve_system
from integration_pipelines.connectors.writer import send_write

from .conftest import PARTITIONS, loaded_keys, materialize_all_partitions, materialize_stream, warehouse_rows

STREAMS = [s.name for s in SYSTEM.streams]
API_KEY = SYSTEM.values["api_key"].sandbox
DB = SYSTEM.values["db"].sandbox
LOGIN = SYSTEM.values["login"].sandbox


def _truth(sandbox, stream: str) -> list[str]:
    return sorted(str(r["id"]) for r in sandbox.emulator("odoo").dump(stream))


def _metadata(results) -> list[dict]:
    return [r.asset_materializations_for_node(f"odoo__{name}")[0].metadata
            for r in results for name in STREAMS if r.asset_materializations_for_node(f"odoo__{name}")]


def _total(results, key: str) -> int:
    return sum(m[key].value for m in _metadata(results))


@pytest.fixture
def odoo(settings, sandbox) -> Iterator[tuple[HttpClient, ResolvedSystem]]:
    resolved = resolve_system(SYSTEM, settings)
    with build_client(resolved) as client:
        yield client, resolved


def _rpc(url: str, service: str, method: str, args: list) -> dict:
    return httpx.post(f"{url}/jsonrpc", json=rpc_body(service, method, args)).json()


# -- reading -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", STREAMS)
def test_full_extract_lands_exactly_the_sandbox_records_over_several_pages(settings, sandbox, monkeypatch, stream):
    monkeypatch.setenv("ODOO_PAGE_SIZE", "2" if SYSTEM.stream(stream).partitioned else "4")
    truth = _truth(sandbox, stream)
    assert truth, "the seeded world must hold records for every stream"
    results = materialize_all_partitions(settings, "odoo", stream)
    assert loaded_keys(settings, "odoo", stream) == truth
    assert max(m["pages"].value for m in _metadata(results)) >= 2

    # what lands is what Odoo sent: many2one pairs stay [id, "display name"] (or false), datetimes naive UTC
    raw, cursor, source = warehouse_rows(
        settings, f"SELECT _raw, _cursor, _source_system FROM raw_odoo.{stream} ORDER BY _pk LIMIT 1")[0]
    record = json.loads(raw)
    assert source == "odoo" and len(cursor) == 19 and cursor[10] == " "
    many2one = {"partners": "commercial_partner_id", "sale_orders": "partner_id", "products": "uom_id",
                "purchase_orders": "partner_id"}[stream]
    assert isinstance(record[many2one], list) and isinstance(record[many2one][1], str)
    # every read logged in, then asked search_read with offset/limit paging in a stable id order
    calls = [c for c in sandbox.emulator("odoo").calls if c["method"] == "search_read"]
    assert {c["kwargs"]["order"] for c in calls} == {"id asc"}
    assert any(c["kwargs"]["offset"] > 0 for c in calls)


def test_partners_include_archived_contacts_and_sale_orders_keep_world_links(settings, sandbox):
    materialize_stream(settings, "odoo", "partners")
    archived = [r for r in sandbox.emulator("odoo").dump("partners") if not r["active"]]
    assert len(archived) == 1, "the world archives one contact; search_read hides it without active_test=False"
    assert str(archived[0]["id"]) in loaded_keys(settings, "odoo", "partners")
    materialize_all_partitions(settings, "odoo", "sale_orders")
    refs = {r[0] for r in warehouse_rows(settings, "SELECT json_extract_string(_raw, '$.client_order_ref') "
                                                   "FROM raw_odoo.sale_orders")}
    assert refs == {invoice.number for invoice in sandbox.state.world.invoices}


@pytest.mark.parametrize("stream", STREAMS)
def test_touched_records_are_fetched_by_write_date_and_update_exactly_n(settings, sandbox, stream):
    materialize_all_partitions(settings, "odoo", stream)
    emulator = sandbox.emulator("odoo")
    touched = emulator.touch(stream, 3)
    emulator.calls.clear()
    sandbox.state.clear_requests()
    results = materialize_all_partitions(settings, "odoo", stream)
    assert _total(results, "updated") == len(touched) == 3
    assert _total(results, "inserted") == 0
    assert loaded_keys(settings, "odoo", stream) == _truth(sandbox, stream)
    # the rerun asked for changes only: a write_date leaf in the domain, in Odoo's own datetime format
    reads = [c for c in emulator.calls if c["method"] == "search_read"]
    assert reads and all(any(isinstance(leaf, list) and leaf[0] == "write_date" and leaf[1] == ">="
                             for leaf in c["args"][0]) for c in reads)
    assert all(m["incremental_since"].value != "full read" for m in _metadata(results))
    log = sandbox.state.request_log("odoo")
    assert {(r["method"], r["path"]) for r in log} == {("POST", "/jsonrpc")}
    assert len(log) <= 2 * len(results), "an incremental rerun is a login and one short page per partition"
    # the raw rows carry the new content
    changed = warehouse_rows(settings, f"SELECT _raw FROM raw_odoo.{stream} WHERE _pk IN (?, ?, ?)", touched)
    assert len(changed) == 3
    dumped = {str(r["id"]): r for r in emulator.dump(stream)}
    assert all(json.loads(raw) == dumped[str(json.loads(raw)["id"])] for (raw,) in changed)


def test_rerun_with_nothing_changed_writes_nothing(settings, sandbox):
    for stream in STREAMS:
        materialize_all_partitions(settings, "odoo", stream)
    before = warehouse_rows(settings, "SELECT _pk, _raw, _run_id FROM raw_odoo.purchase_orders ORDER BY _pk")
    for stream in STREAMS:
        results = materialize_all_partitions(settings, "odoo", stream)
        assert _total(results, "inserted") == 0 and _total(results, "updated") == 0, stream
    after = warehouse_rows(settings, "SELECT _pk, _raw, _run_id FROM raw_odoo.purchase_orders ORDER BY _pk")
    assert after == before


def test_twenty_percent_faults_still_land_exactly(settings, sandbox, monkeypatch):
    monkeypatch.setenv("ODOO_PAGE_SIZE", "3")
    monkeypatch.setenv("ODOO_MAX_RETRIES", "12")
    monkeypatch.setenv("ODOO_REQUESTS_PER_SECOND", "1000")
    sandbox.set_faults("odoo", error_rate=0.08, rate_limit_rate=0.06, drop_rate=0.06, retry_after=0, seed=5)
    for stream in STREAMS:
        materialize_all_partitions(settings, "odoo", stream)
        assert loaded_keys(settings, "odoo", stream) == _truth(sandbox, stream)
    faults = {r["fault"] for r in sandbox.state.request_log("odoo") if r["fault"]}
    assert faults == {"error", "rate_limit", "drop"}, "every kind of fault must actually have fired"


def test_stock_change_is_seen_although_it_does_not_move_the_products_write_date(settings, sandbox, odoo):
    client, resolved = odoo
    materialize_stream(settings, "odoo", "products")
    product = next(p for p in sandbox.emulator("odoo").dump("products") if p["default_code"] == "CABLE")
    write(client, resolved, "set_stock_quantity",
          [{"product_id": product["id"], "location_id": 8, "inventory_quantity_auto_apply": 7}])
    after = next(p for p in sandbox.emulator("odoo").dump("products") if p["id"] == product["id"])
    assert after["qty_available"] == 7.0 and after["write_date"] == product["write_date"]
    result = materialize_stream(settings, "odoo", "products")
    metadata = result.asset_materializations_for_node("odoo__products")[0].metadata
    assert metadata["updated"].value == 1 and metadata["inserted"].value == 0
    (raw,) = warehouse_rows(settings, "SELECT _raw FROM raw_odoo.products WHERE _pk = ?", [str(product["id"])])[0]
    assert json.loads(raw)["qty_available"] == 7.0


# -- errors --------------------------------------------------------------------------------------------
def test_odoo_error_inside_a_200_surfaces_its_readable_message_without_secrets(settings, sandbox):
    sandbox.emulator("odoo").deny("purchase.order")
    result = materialize_stream(settings, "odoo", "purchase_orders", PARTITIONS[0], raise_on_error=False)
    assert not result.success
    text = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "odoo/purchase_orders" in text
    assert "You are not allowed to access 'Purchase Order' (purchase.order) records" in text
    assert API_KEY not in text


def test_wrong_api_key_fails_at_login_naming_the_variable(settings, sandbox, monkeypatch):
    wrong = "FAKE-wrong-odoo-key-0123456789abcdef"
    monkeypatch.setenv("ODOO_API_KEY", wrong)
    monkeypatch.setenv("ODOO_BASE_URL", settings.sandbox_url)
    monkeypatch.setenv("ODOO_DB", DB)
    monkeypatch.setenv("ODOO_LOGIN", LOGIN)
    result = materialize_stream(settings, "odoo", "partners", raise_on_error=False)
    assert not result.success
    text = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "ODOO_API_KEY" in text and "refused the login" in text
    assert wrong not in text and API_KEY not in text
    log = sandbox.state.request_log("odoo")
    assert len(log) == 1, "a refused login stops before any read"


def test_sandbox_speaks_odoo_json_rpc(sandbox_server, sandbox):
    url = sandbox_server.url
    assert _rpc(url, "common", "login", [DB, LOGIN, API_KEY])["result"] == 6
    assert _rpc(url, "common", "login", [DB, LOGIN, "nope"])["result"] is False
    error = _rpc(url, "common", "login", ["no-such-db", LOGIN, API_KEY])["error"]
    assert 'database "no-such-db" does not exist' in error["data"]["message"]
    denied = _rpc(url, "object", "execute_kw", [DB, 6, "nope", "res.partner", "search", [[]]])["error"]
    assert denied["data"]["name"] == "odoo.exceptions.AccessDenied" and denied["code"] == 200

    def search_read(domain, **kwargs):
        return _rpc(url, "object", "execute_kw", [DB, 6, API_KEY, "sale.order", "search_read", [domain],
                                                  {"fields": ["name", "partner_id"], **kwargs}])

    # Odoo's datetime format, a bare date, and the ISO form with T/Z it refuses
    assert search_read([["write_date", ">=", "2026-03-08 00:00:00"]], limit=2)["result"]
    assert search_read([["write_date", ">=", "2026-03-08"]], limit=2)["result"]
    refused = search_read([["write_date", ">=", "2026-03-08T00:00:00Z"]])["error"]["data"]
    assert refused["name"] == "builtins.ValueError"
    assert "does not match format '%Y-%m-%d %H:%M:%S'" in refused["message"]
    assert "Invalid field 'nope'" in search_read([["nope", "=", 1]])["error"]["data"]["message"]
    assert "OFFSET must not be negative" in search_read([], offset=-1)["error"]["data"]["message"]
    assert 'Invalid "order"' in search_read([], order="nope desc")["error"]["data"]["message"]
    page = search_read(["|", ["id", "=", 1], ["id", "=", 2]], order="id desc")["result"]
    assert [r["id"] for r in page] == [2, 1] and set(page[0]) == {"id", "name", "partner_id"}
    assert isinstance(page[0]["partner_id"], list) and len(page[0]["partner_id"]) == 2
    unknown = _rpc(url, "object", "execute_kw", [DB, 6, API_KEY, "no.model", "search", [[]]])["error"]["data"]
    assert unknown["message"] == "Object no.model doesn't exist"
    wrong_type = httpx.post(f"{url}/jsonrpc", content=b"{}", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 400


# -- writing -------------------------------------------------------------------------------------------
def _po_vals(sandbox, origin: str) -> dict:
    emulator = sandbox.emulator("odoo")
    vendor = next(p for p in emulator.dump("partners") if p["supplier_rank"])
    product = next(p for p in emulator.dump("products") if p["default_code"] == "GADGET")
    return {"partner_id": vendor["id"], "origin": origin,
            "order_line": [[0, 0, {"product_id": product["id"], "product_qty": 40, "price_unit": 54.45}]]}


def test_create_purchase_order_through_send_write_and_a_duplicate_origin_is_refused_readably(sandbox, odoo):
    client, resolved = odoo
    writer = SYSTEM.writer("create_purchase_order")
    vals = _po_vals(sandbox, "SYNC/PO/0001")
    first = raise_for_rpc_error(resolved, writer.name, send_write(
        client, resolved, writer, [writer_record(client, resolved, writer.name, [vals])]))
    new_id = first.external_ids[0]
    assert new_id and first.status == 200
    created = [o for o in sandbox.emulator("odoo").dump("purchase_orders") if o["origin"] == "SYNC/PO/0001"]
    assert len(created) == 1 and str(created[0]["id"]) == new_id
    assert created[0]["amount_total"] == 2178.0 and created[0]["state"] == "draft"

    # a blind retry of the same create: the unique origin refuses it, and Odoo's words reach the caller
    # (an error inside Odoo's HTTP 200 answer: send_write raises it as the failed write it is)
    with pytest.raises(ApiError) as info:
        send_write(client, resolved, writer, [writer_record(client, resolved, writer.name, [vals])])
    text = str(info.value)
    assert "Source Document (origin) already exists" in text and "create_purchase_order" in text
    assert "odoo.exceptions.ValidationError" in info.value.body
    assert API_KEY not in text and API_KEY not in info.value.body
    assert len([o for o in sandbox.emulator("odoo").dump("purchase_orders") if o["origin"] == "SYNC/PO/0001"]) == 1

    # the idempotent create a sync uses: search by origin first, so a retry finds the first order
    assert create_purchase_order_once(client, resolved, vals) == (int(new_id), False)
    other_id, made = create_purchase_order_once(client, resolved, _po_vals(sandbox, "SYNC/PO/0002"))
    assert made and create_purchase_order_once(client, resolved, _po_vals(sandbox, "SYNC/PO/0002")) == (other_id, False)
    origins = [o["origin"] for o in sandbox.emulator("odoo").dump("purchase_orders")]
    assert origins.count("SYNC/PO/0001") == origins.count("SYNC/PO/0002") == 1


def test_update_purchase_order_twice_leaves_one_order_with_the_values(sandbox, odoo):
    client, resolved = odoo
    writer = SYSTEM.writer("update_purchase_order")
    order = sandbox.emulator("odoo").dump("purchase_orders")[0]
    count = len(sandbox.emulator("odoo").dump("purchase_orders"))
    args = [[order["id"]], {"partner_ref": "VENDOR-CONF-77", "date_planned": "2026-03-20 09:00:00"}]
    for _ in range(2):
        result = raise_for_rpc_error(resolved, writer.name, send_write(
            client, resolved, writer, [writer_record(client, resolved, writer.name, args)]))
        assert result.body["result"] is True and result.external_ids == [None]
    rows = sandbox.emulator("odoo").dump("purchase_orders")
    updated = next(o for o in rows if o["id"] == order["id"])
    assert len(rows) == count and updated["partner_ref"] == "VENDOR-CONF-77"
    assert updated["date_planned"] == "2026-03-20 09:00:00" and updated["write_date"] > order["write_date"]
    with pytest.raises(ApiError, match="Record does not exist or has been deleted"):
        write(client, resolved, "update_purchase_order", [[999999], {"partner_ref": "x"}])


def test_set_stock_quantity_is_absolute_so_a_replay_changes_nothing(sandbox, odoo):
    client, resolved = odoo
    emulator = sandbox.emulator("odoo")
    product = next(p for p in emulator.dump("products") if p["default_code"] == "WIDGET-L")
    vals = {"product_id": product["id"], "location_id": 8, "inventory_quantity_auto_apply": 120}
    first = write(client, resolved, "set_stock_quantity", [vals])
    again = write(client, resolved, "set_stock_quantity", [vals])
    assert first.external_ids == again.external_ids != [None]
    assert next(p for p in emulator.dump("products") if p["id"] == product["id"])["qty_available"] == 120.0
    quants = [q for q in emulator.records["stock.quant"].values() if q["product_id"][0] == product["id"]]
    assert len(quants) == 1
    service = next(p for p in emulator.dump("products") if p["type"] == "service")
    with pytest.raises(ApiError, match="Quants cannot be created for consumables or services"):
        write(client, resolved, "set_stock_quantity", [{**vals, "product_id": service["id"]}])
