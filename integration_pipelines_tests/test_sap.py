"""SAP S/4HANA (OData V2) end to end: sandbox over real HTTP → extract assets → DuckDB, plus the protocol details
a real SAP tenant enforces (typed `$filter`, server-driven paging, CSRF handshake, business-key uniqueness).

SAP publishes no official Python SDK on PyPI, so the OData protocol itself is the judge here: the sandbox is
also read the way any OData V2 client reads it (following `__next`), not only the way the connector does.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest

from integration_pipelines.connectors.errors import ApiError
from integration_pipelines.connectors.runtime import build_client, resolve_system
from integration_pipelines.connectors.sap import ODATA_ROOT, SYSTEM
from integration_pipelines.connectors.writer import send_write

from .conftest import PARTITIONS, loaded_keys, materialize_all_partitions, materialize_stream, warehouse_rows

STREAMS = [s.name for s in SYSTEM.streams]
INCREMENTAL = [s.name for s in SYSTEM.streams if s.incremental_request is not None]
USER = SYSTEM.values["username"].sandbox
PASSWORD = SYSTEM.values["password"].sandbox
SO_PATH = f"{ODATA_ROOT}/API_SALES_ORDER_SRV/A_SalesOrder"


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """SAP's default of 10 requests a second would make small-page tests slow for no insight."""
    monkeypatch.setenv("SAP_REQUESTS_PER_SECOND", "1000")


def _key(stream: str, record: dict) -> str:
    return record["__metadata"]["id"] if stream == "material_stock" else record[SYSTEM.stream(stream).primary_key]


def _truth(sandbox, stream: str) -> list[str]:
    return sorted(_key(stream, r) for r in sandbox.emulator("sap").dump(stream))


def _metadata(results) -> list[dict]:
    return [r.get_asset_materialization_events()[0].materialization.metadata for r in results]


def _total(results, name: str) -> int:
    return sum(m[name].value for m in _metadata(results))


def _entity_requests(sandbox, stream: str) -> list[dict[str, list[str]]]:
    """The parsed query of every read of one stream's entity set."""
    path = SYSTEM.stream(stream).request.path
    return [parse_qs(r["query"]) for r in sandbox.state.request_log("sap") if r["path"] == path]


def _client(settings):
    return build_client(resolve_system(SYSTEM, settings))


@pytest.mark.parametrize("stream", STREAMS)
def test_full_read_pages_with_top_and_skip_and_lands_exactly_the_sandbox_records(settings, sandbox, monkeypatch,
                                                                                  stream):
    monkeypatch.setenv("SAP_PAGE_SIZE", "3")
    results = materialize_all_partitions(settings, "sap", stream)
    truth = _truth(sandbox, stream)
    assert len(truth) > 3, "the seeded world must fill several pages"
    assert loaded_keys(settings, "sap", stream) == truth

    queries = _entity_requests(sandbox, stream)
    skips = sorted({int(q["$skip"][0]) for q in queries})
    assert skips[:3] == [0, 3, 6] and all(q["$top"] == ["3"] and q["$format"] == ["json"] for q in queries)
    assert all("$inlinecount" in q and "$orderby" in q for q in queries)
    assert _total(results, "inserted") == len(truth)

    raw, cursor, source = warehouse_rows(
        settings, f"SELECT _raw, _cursor, _source_system FROM raw_sap.{stream} ORDER BY _pk LIMIT 1")[0]
    record = json.loads(raw)
    assert record["__metadata"]["type"].endswith("Type") and source == "sap"
    if stream in ("products", "sales_orders"):
        assert cursor == record["LastChangeDateTime"] and cursor.endswith("+0000)/")
        nav = "to_Description" if stream == "products" else "to_Item"
        assert record[nav]["results"], "the expanded navigation lands with its parent"
    if stream == "sales_orders":  # OData V2 decimals are strings
        assert isinstance(record["TotalNetAmount"], str) and "." in record["TotalNetAmount"]


def test_sales_order_partitions_hold_that_days_orders_only(settings, sandbox):
    result = materialize_stream(settings, "sap", "sales_orders", PARTITIONS[1])
    (query,) = _entity_requests(sandbox, "sales_orders")
    assert query["$filter"] == [
        "CreationDate ge datetime'2026-03-08T00:00:00' and CreationDate lt datetime'2026-03-09T00:00:00'"]
    day_ms = 1772928000000  # 2026-03-08T00:00:00Z
    expected = sorted(r["SalesOrder"] for r in sandbox.emulator("sap").dump("sales_orders")
                      if r["CreationDate"] == f"/Date({day_ms})/")
    assert expected and loaded_keys(settings, "sap", "sales_orders") == expected
    assert _total([result], "records_read") == len(expected)


@pytest.mark.parametrize("stream", INCREMENTAL)
def test_touched_records_are_fetched_with_the_change_filter_and_updated_exactly(settings, sandbox, monkeypatch,
                                                                                stream):
    monkeypatch.setenv("SAP_PAGE_SIZE", "4")
    materialize_all_partitions(settings, "sap", stream)
    touched = sandbox.emulator("sap").touch(stream, 3)
    sandbox.state.clear_requests()

    results = materialize_all_partitions(settings, "sap", stream)
    filters = [q["$filter"][0] for q in _entity_requests(sandbox, stream)]
    assert filters
    if stream == "business_partners":  # Edm.DateTime day granularity, and never-changed partners by creation
        assert all("LastChangeDate ge datetime'" in f and "CreationDate ge datetime'" in f for f in filters)
    else:
        assert all("LastChangeDateTime gt datetimeoffset'" in f and f.count("Z'") == 1 for f in filters)
    assert _total(results, "updated") == 3 and _total(results, "inserted") == 0
    assert all(m["incremental_since"].value != "full read" for m in _metadata(results))
    changed = {k for k, raw in warehouse_rows(settings, f"SELECT _pk, _raw FROM raw_sap.{stream}")
               if k in touched}
    assert changed == set(touched)
    assert loaded_keys(settings, "sap", stream) == _truth(sandbox, stream)


def test_stock_has_no_change_timestamp_so_a_full_snapshot_updates_exactly_the_moved_rows(settings, sandbox):
    materialize_stream(settings, "sap", "material_stock")
    touched = sandbox.emulator("sap").touch("material_stock", 2)
    sandbox.state.clear_requests()
    result = materialize_stream(settings, "sap", "material_stock")
    assert all("$filter" not in q for q in _entity_requests(sandbox, "material_stock"))
    metadata = _metadata([result])[0]
    assert metadata["updated"].value == 2 and metadata["inserted"].value == 0
    quantities = dict(warehouse_rows(settings, "SELECT _pk, MatlWrhsStkQtyInMatlBaseUnit FROM raw_sap.material_stock"))
    truth = {r["__metadata"]["id"]: r["MatlWrhsStkQtyInMatlBaseUnit"]
             for r in sandbox.emulator("sap").dump("material_stock")}
    assert quantities == truth and set(touched) <= set(truth)
    # stock per SKU adds up to the shared world's stock (a SKU may sit in two storage locations), plus the
    # five units each touched row received
    world = {p.sku: p.stock for p in sandbox.state.world.products if p.sku not in ("SERVICE-HR", "SUPPORT-Y")}
    for record in sandbox.emulator("sap").dump("material_stock"):
        moved = 5 if record["__metadata"]["id"] in touched else 0
        world[record["Material"]] -= float(record["MatlWrhsStkQtyInMatlBaseUnit"]) - moved
    assert set(world.values()) == {0}


def test_rerun_with_nothing_changed_writes_nothing(settings, sandbox):
    for stream in STREAMS:
        materialize_all_partitions(settings, "sap", stream)
    before = {s: warehouse_rows(settings, f"SELECT _pk, _raw, _run_id FROM raw_sap.{s} ORDER BY _pk")
              for s in STREAMS}
    for stream in STREAMS:
        results = materialize_all_partitions(settings, "sap", stream)
        assert _total(results, "inserted") == 0 and _total(results, "updated") == 0, stream
        after = warehouse_rows(settings, f"SELECT _pk, _raw, _run_id FROM raw_sap.{stream} ORDER BY _pk")
        assert after == before[stream]


def test_small_pages_and_twenty_percent_faults_still_land_exactly(settings, sandbox, monkeypatch):
    monkeypatch.setenv("SAP_PAGE_SIZE", "3")
    monkeypatch.setenv("SAP_MAX_RETRIES", "12")
    sandbox.set_faults("sap", error_rate=0.08, rate_limit_rate=0.07, drop_rate=0.05, retry_after=0, seed=11)
    for stream in STREAMS:
        materialize_all_partitions(settings, "sap", stream)
    for stream in STREAMS:
        assert loaded_keys(settings, "sap", stream) == _truth(sandbox, stream), stream
    faults = {r["fault"] for r in sandbox.state.request_log("sap") if r["fault"]}
    assert faults == {"error", "rate_limit", "drop"}, "every kind of fault must actually have fired"


def test_odata_error_body_surfaces_readable_and_without_secrets(settings, sandbox):
    with _client(settings) as client, pytest.raises(ApiError) as caught:
        client.request("GET", SO_PATH, params={"$format": "json",
                                               "$filter": "LastChangeDateTime gt datetime'2026-03-08T00:00:00'"})
    text = str(caught.value)
    assert caught.value.status == 400 and "Invalid filter expression" in text
    assert "incompatible with operand types 'Edm.DateTimeOffset' and 'Edm.DateTime'" in text
    assert PASSWORD not in text and PASSWORD not in caught.value.body and "Basic " not in text

    with _client(settings) as client, pytest.raises(ApiError, match=r"Invalid value '-1' for system query option"):
        client.request("GET", SO_PATH, params={"$format": "json", "$top": "-1"})
    with _client(settings) as client, pytest.raises(ApiError, match=r"property 'Nope' not found in type"):
        client.request("GET", SO_PATH, params={"$format": "json", "$filter": "Nope eq 'x'"})


def test_wrong_password_fails_naming_the_variables_and_hides_the_password(settings, sandbox, monkeypatch):
    wrong = "FAKE-wrong-password-0123456789"
    monkeypatch.setenv("SAP_USERNAME", USER)
    monkeypatch.setenv("SAP_PASSWORD", wrong)
    monkeypatch.setenv("SAP_HOST", "my000000-api.FAKE-sandbox.s4hana.cloud.sap.invalid")  # live mode needs it
    monkeypatch.setenv("SAP_BASE_URL", settings.sandbox_url)
    result = materialize_stream(settings, "sap", "business_partners", raise_on_error=False)
    assert not result.success
    text = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "SAP_USERNAME" in text and "SAP_PASSWORD" in text and "401" in text and "Logon failed" in text
    assert wrong not in text


def test_create_sales_order_fetches_a_csrf_token_and_the_business_key_prevents_a_second_order(settings, sandbox):
    order = {
        "SalesOrderType": "OR", "SalesOrganization": "1010", "DistributionChannel": "10",
        "OrganizationDivision": "00", "SoldToParty": "10300001", "PurchaseOrderByCustomer": "SYNC-42",
        "TransactionCurrency": "USD",
        "to_Item": [{"Material": "WIDGET-S", "RequestedQuantity": "2"}, {"Material": "CABLE",
                                                                        "RequestedQuantity": "4"}],
    }
    resolved = resolve_system(SYSTEM, settings)
    writer = SYSTEM.writer("create_sales_order")
    with build_client(resolved) as client:
        result = send_write(client, resolved, writer, [order], idempotency_key="sync-42")
        assert result.status == 201 and result.external_ids[0]
        assert result.body["d"]["TotalNetAmount"] == "60.00"  # 2 x 15.00 + 4 x 7.50
        log = [(r["method"], r["path"]) for r in sandbox.state.request_log("sap")]
        assert log == [("GET", writer.csrf_fetch_path), ("POST", SO_PATH)]

        with pytest.raises(ApiError) as caught:  # the retry of the same create
            send_write(client, resolved, writer, [order], idempotency_key="sync-42")
    assert "Purchase order number SYNC-42 already exists for sold-to party 10300001" in str(caught.value)
    assert result.external_ids[0] in str(caught.value)
    created = [r for r in sandbox.emulator("sap").dump("sales_orders") if r["PurchaseOrderByCustomer"] == "SYNC-42"]
    assert [r["SalesOrder"] for r in created] == result.external_ids
    assert [i["Material"] for i in created[0]["to_Item"]["results"]] == ["WIDGET-S", "CABLE"]


def test_writes_without_the_csrf_token_and_session_cookie_are_refused(sandbox_server, sandbox):
    auth = (USER, PASSWORD)
    body = {"SalesOrderType": "OR", "SalesOrganization": "1010", "DistributionChannel": "10",
            "OrganizationDivision": "00", "SoldToParty": "10300002", "to_Item": [{"Material": "GADGET",
                                                                                  "RequestedQuantity": "1"}]}
    with httpx.Client(base_url=sandbox_server.url, auth=auth) as client:
        refused = client.post(SO_PATH, json=body)
        assert refused.status_code == 403 and refused.headers["X-CSRF-Token"] == "Required"
        fetched = client.get(f"{ODATA_ROOT}/API_SALES_ORDER_SRV/", headers={"X-CSRF-Token": "Fetch"})
        token = fetched.headers["X-CSRF-Token"]
        assert fetched.status_code == 200 and token and "SAP_SESSIONID_FAK_100" in client.cookies
    with httpx.Client(base_url=sandbox_server.url, auth=auth) as cookieless:
        assert cookieless.post(SO_PATH, json=body, headers={"X-CSRF-Token": token}).status_code == 403
    with httpx.Client(base_url=sandbox_server.url, auth=auth, cookies=fetched.cookies) as session:
        created = session.post(SO_PATH, json=body, headers={"X-CSRF-Token": token, "Accept": "application/json"})
        assert created.status_code == 201 and created.headers["Location"].endswith(
            f"A_SalesOrder('{created.json()['d']['SalesOrder']}')")


def test_server_driven_paging_follows_next_like_any_odata_client(sandbox_server, sandbox):
    """A client that sends no `$top` gets SAP's own page size and a `__next` link with a `$skiptoken`."""
    sandbox.emulator("sap").max_page_size = 7
    path = f"{ODATA_ROOT}/API_BUSINESS_PARTNER/A_BusinessPartner"
    seen, pages = [], 0
    with httpx.Client(base_url=sandbox_server.url, auth=(USER, PASSWORD)) as client:
        url: str | None = f"{path}?$format=json&$inlinecount=allpages"
        while url:
            page = client.get(url).json()["d"]
            pages += 1
            seen += [r["BusinessPartner"] for r in page["results"]]
            url = page.get("__next")
            assert url is None or "$skiptoken=" in url
        assert int(page["__count"]) == len(seen) and pages == -(-len(seen) // 7)
        assert sorted(seen) == _truth(sandbox, "business_partners") and len(set(seen)) == len(seen)

        # $top larger than the server's page: the rest of the $top comes through __next, and no more
        first = client.get(path, params={"$format": "json", "$top": "10"}).json()["d"]
        second = client.get(first["__next"]).json()["d"]
        assert len(first["results"]) == 7 and len(second["results"]) == 3 and "__next" not in second

        # without $format or a JSON Accept header SAP answers Atom XML
        atom = client.get(path, params={"$top": "1"})
        assert atom.headers["content-type"].startswith("application/atom+xml") and "<feed" in atom.text
        count = client.get(f"{path}/$count")
        assert count.text == str(len(seen))
