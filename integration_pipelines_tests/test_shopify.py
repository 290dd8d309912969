"""Shopify end to end: sandbox over real HTTP → extract assets → DuckDB, and the two writers through `send_write`.

Shopify has no official Python SDK worth judging with (the ShopifyAPI package is a pyactiveresource wrapper the
brief asks to skip), so the sandbox's faithfulness is pinned by raw HTTP checks of the protocol instead: the
Link header, the page_info rules, the call-limit bucket and the error bodies.
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from integration_pipelines.connectors.errors import ApiError, ConfigurationError
from integration_pipelines.connectors.reader import ReadWindow, read_pages
from integration_pipelines.connectors.runtime import build_client, resolve_system
from integration_pipelines.connectors.shopify import API_ROOT, SYSTEM
from integration_pipelines.connectors.writer import send_write
from integration_pipelines.sandbox.shopify import PRIMARY_LOCATION_ID, RATE_LIMIT_MESSAGE

from .conftest import PARTITIONS, loaded_keys, materialize_all_partitions, materialize_stream, warehouse_rows

STREAMS = [s.name for s in SYSTEM.streams]
TOKEN = SYSTEM.values["access_token"].sandbox
AUTH = {"X-Shopify-Access-Token": TOKEN}
#: how many records each stream's change test touches (the shop holds 6 inventory items)
TOUCH = {"customers": 4, "orders": 5, "products": 2, "inventory_levels": 3}


@pytest.fixture(autouse=True)
def _fast_shop(settings, sandbox, monkeypatch):
    """Tests make hundreds of calls in seconds: lift both the client's pacing and the shop's bucket (a real
    shop's 40-call bucket leaking 2/s would turn a test run into minutes of honest waiting). The one test
    about the bucket puts the standard limits back."""
    monkeypatch.setenv("SHOPIFY_REQUESTS_PER_SECOND", "1000")
    sandbox.emulator("shopify").set_call_limit(100_000, 10_000.0)


def _truth(sandbox, stream: str) -> list[str]:
    key = SYSTEM.stream(stream).primary_key
    return sorted(str(o[key]) for o in sandbox.emulator("shopify").dump(stream))


def _materialize(settings, stream: str) -> list:
    return materialize_all_partitions(settings, "shopify", stream)


def _sum(results: list, field: str, stream: str) -> int:
    return sum(r.asset_materializations_for_node(f"shopify__{stream}")[0].metadata[field].value for r in results)


def _list_requests(sandbox, stream: str) -> list[dict[str, list[str]]]:
    """The query of every list request the sandbox saw for one stream's endpoint."""
    path = f"{API_ROOT}/{stream}.json"
    return [parse_qs(r["query"]) for r in sandbox.state.request_log("shopify") if r["path"] == path]


@pytest.mark.parametrize("stream", STREAMS)
def test_full_read_follows_the_link_header_and_lands_exactly_the_sandbox_records(settings, sandbox, monkeypatch,
                                                                                  stream):
    monkeypatch.setenv("SHOPIFY_PAGE_SIZE", "3")
    truth = _truth(sandbox, stream)
    assert len(truth) > 3, "the seeded shop must fill several pages"
    results = _materialize(settings, stream)
    assert loaded_keys(settings, "shopify", stream) == truth

    queries = _list_requests(sandbox, stream)
    first_pages = [q for q in queries if "page_info" not in q]
    follow_ups = [q for q in queries if "page_info" in q]
    assert len(first_pages) == len(results) and follow_ups, "several pages per read"
    assert all(set(q) == {"limit", "page_info"} for q in follow_ups), "a page_info URL carries nothing else"
    assert all("updated_at_min" not in q for q in first_pages), "a first read has no change filter"
    if stream == "orders":
        assert all(q["status"] == ["any"] and "created_at_min" in q for q in first_pages)
        assert sorted(q["created_at_min"][0][:10] for q in first_pages) == PARTITIONS
    if stream == "inventory_levels":
        assert all(q["location_ids"] == [str(PRIMARY_LOCATION_ID)] for q in first_pages)

    raw, cursor, source = warehouse_rows(
        settings, f"SELECT _raw, _cursor, _source_system FROM raw_shopify.{stream} LIMIT 1")[0]
    record = json.loads(raw)
    assert cursor == record["updated_at"] and source == "shopify"
    assert cursor[-6:] in {"-04:00", "-05:00"}, "Shopify answers in the shop's time zone"


def test_orders_need_status_any_and_carry_skus_of_the_worlds_products(settings, sandbox):
    orders = sandbox.emulator("shopify").dump("orders")
    with httpx.Client(base_url=settings.sandbox_url, headers=AUTH) as http:
        default = http.get(f"{API_ROOT}/orders.json", params={"limit": 250}).json()["orders"]
    closed = [o for o in orders if o["closed_at"]]
    assert closed and len(default) == len(orders) - len(closed), "without status=any closed orders are hidden"

    _materialize(settings, "orders")
    skus = {p.sku for p in sandbox.state.world.products}
    emails = {p.email for p in sandbox.state.world.people}
    landed = [json.loads(r[0]) for r in warehouse_rows(settings, "SELECT _raw FROM raw_shopify.orders")]
    assert len(landed) == len(orders)
    assert all(li["sku"] in skus for o in landed for li in o["line_items"])
    assert all(o["email"] in emails and o["customer"]["email"] == o["email"] for o in landed)


@pytest.mark.parametrize("stream", STREAMS)
def test_touched_records_are_fetched_with_the_change_filter_and_updated(settings, sandbox, monkeypatch, stream):
    monkeypatch.setenv("SHOPIFY_PAGE_SIZE", "2")
    _materialize(settings, stream)
    touched = sandbox.emulator("shopify").touch(stream, TOUCH[stream])
    sandbox.state.clear_requests()

    results = _materialize(settings, stream)
    assert _sum(results, "updated", stream) == TOUCH[stream]
    assert _sum(results, "inserted", stream) == 0
    first_pages = [q for q in _list_requests(sandbox, stream) if "page_info" not in q]
    assert first_pages and all("updated_at_min" in q for q in first_pages)
    assert all(q["updated_at_min"][0].endswith("+00:00") for q in first_pages)
    assert loaded_keys(settings, "shopify", stream) == _truth(sandbox, stream)

    key = SYSTEM.stream(stream).primary_key
    truth = {str(o[key]): o for o in sandbox.emulator("shopify").dump(stream)}
    marks = ", ".join("?" * len(touched))
    rows = warehouse_rows(settings, f"SELECT _pk, _raw FROM raw_shopify.{stream} WHERE _pk IN ({marks})", touched)
    assert len(rows) == len(touched)
    assert all(json.loads(raw) == truth[pk] for pk, raw in rows)


def test_rerun_with_nothing_changed_writes_nothing(settings, sandbox):
    for stream in ("customers", "orders"):
        _materialize(settings, stream)
        before = warehouse_rows(settings, f"SELECT _pk, _raw, _run_id FROM raw_shopify.{stream} ORDER BY _pk")
        sandbox.state.clear_requests()
        results = _materialize(settings, stream)
        assert _sum(results, "inserted", stream) == 0 and _sum(results, "updated", stream) == 0
        # the lookback window re-reads the latest changes, which compare equal to what is stored
        assert _sum(results, "unchanged", stream) == _sum(results, "records_read", stream)
        assert all("updated_at_min" in q for q in _list_requests(sandbox, stream))
        after = warehouse_rows(settings, f"SELECT _pk, _raw, _run_id FROM raw_shopify.{stream} ORDER BY _pk")
        assert after == before


@pytest.mark.reliability
def test_twenty_percent_faults_still_land_exactly_the_sandbox_records(settings, sandbox, monkeypatch):
    monkeypatch.setenv("SHOPIFY_PAGE_SIZE", "3")
    monkeypatch.setenv("SHOPIFY_MAX_RETRIES", "12")
    sandbox.set_faults("shopify", error_rate=0.08, rate_limit_rate=0.08, drop_rate=0.04, retry_after=0, seed=11)
    for stream in STREAMS:
        _materialize(settings, stream)
        assert loaded_keys(settings, "shopify", stream) == _truth(sandbox, stream)
    for stream in ("customers", "orders"):  # the change-filter path under the same faults
        sandbox.emulator("shopify").touch(stream, 6)
        results = _materialize(settings, stream)
        assert _sum(results, "updated", stream) == 6 and _sum(results, "inserted", stream) == 0
        assert loaded_keys(settings, "shopify", stream) == _truth(sandbox, stream)
    faults = [r for r in sandbox.state.request_log("shopify") if r["fault"]]
    assert {f["fault"] for f in faults} == {"error", "rate_limit", "drop"}
    assert any("page_info" in f["query"] for f in faults), "follow-up pages must have been faulted too"


def test_shopify_error_body_surfaces_readable_without_the_token(settings, sandbox, monkeypatch):
    monkeypatch.setenv("SHOPIFY_PAGE_SIZE", "251")
    result = materialize_stream(settings, "shopify", "customers", raise_on_error=False)
    assert not result.success
    text = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "400" in text and "limit" in text and "Invalid value" in text and "250" in text
    assert TOKEN not in text and "X-Shopify-Access-Token" not in text


def test_wrong_token_names_the_variable_and_hides_the_token(settings, sandbox, monkeypatch):
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "shpat_FAKE_wrong_token_0123456789")
    monkeypatch.setenv("SHOPIFY_SHOP", "acme-demo")
    monkeypatch.setenv("SHOPIFY_BASE_URL", settings.sandbox_url)
    result = materialize_stream(settings, "shopify", "products", raise_on_error=False)
    assert not result.success
    text = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "SHOPIFY_ACCESS_TOKEN" in text and "401" in text and "Invalid API key or access token" in text
    assert "shpat_FAKE_wrong_token_0123456789" not in text


def test_live_mode_addresses_the_shops_own_host(settings, monkeypatch):
    monkeypatch.setenv("SHOPIFY_ACCESS_TOKEN", "shpat_FAKE_live_looking_token_42")
    with pytest.raises(ConfigurationError, match="SHOPIFY_SHOP"):
        resolve_system(SYSTEM, settings)  # a real token must never go to the sandbox's demo shop
    monkeypatch.setenv("SHOPIFY_SHOP", "corner-store")
    resolved = resolve_system(SYSTEM, settings)
    assert resolved.mode == "live" and resolved.base_url == "https://corner-store.myshopify.com"
    assert resolved.public_values == {"shop": "corner-store"}
    assert (SYSTEM.requests_per_second, SYSTEM.burst) == (2.0, 40), "the standard plan's leaky bucket"


def test_inventory_set_is_absolute_so_a_replay_leaves_one_level(settings, sandbox):
    shop = sandbox.emulator("shopify")
    _materialize(settings, "inventory_levels")
    item = shop.dump("inventory_levels")[0]["inventory_item_id"]
    resolved = resolve_system(SYSTEM, settings)
    record = {"location_id": PRIMARY_LOCATION_ID, "inventory_item_id": item, "available": 77}
    writer = SYSTEM.writer("set_inventory_levels")
    with build_client(resolved) as client:
        first = send_write(client, resolved, writer, [record], idempotency_key="stock-sync-1")
        replay = send_write(client, resolved, writer, [record], idempotency_key="stock-sync-1")
    gid = f"gid://shopify/InventoryLevel/{PRIMARY_LOCATION_ID}?inventory_item_id={item}"
    assert first.status == replay.status == 200
    assert first.external_ids == replay.external_ids == [gid], "the level's id is the (location, item) pair"
    levels = [lv for lv in shop.dump("inventory_levels") if lv["inventory_item_id"] == item]
    assert len(levels) == 1 and levels[0]["available"] == 77
    variant = next(v for p in shop.dump("products") for v in p["variants"] if v["inventory_item_id"] == item)
    assert variant["inventory_quantity"] == 77, "the variant reports the level it tracks"

    results = _materialize(settings, "inventory_levels")
    assert _sum(results, "updated", "inventory_levels") == 1 and _sum(results, "inserted", "inventory_levels") == 0
    (raw,) = warehouse_rows(settings, "SELECT _raw FROM raw_shopify.inventory_levels WHERE _pk = ?", [gid])[0]
    assert json.loads(raw)["available"] == 77

    with build_client(resolved) as client, pytest.raises(ApiError) as unknown:
        send_write(client, resolved, writer, [{**record, "inventory_item_id": 1}])
    assert unknown.value.status == 422 and "Inventory item does not exist" in str(unknown.value)


def test_customer_create_has_no_key_but_a_retry_cannot_duplicate(settings, sandbox):
    resolved = resolve_system(SYSTEM, settings)
    writer = SYSTEM.writer("create_customers")
    body = {"customer": {"first_name": "Nova", "last_name": "Buyer", "email": "nova.buyer@example.com",
                         "verified_email": True, "addresses": [{"address1": "1 Main Street", "city": "Austin",
                                                                "country_code": "US", "zip": "73301"}]}}
    with build_client(resolved) as client:
        created = send_write(client, resolved, writer, [body], idempotency_key="ignored-no-such-thing")
        with pytest.raises(ApiError) as retried:
            send_write(client, resolved, writer, [body], idempotency_key="ignored-no-such-thing")
        with pytest.raises(ApiError) as shouting:
            send_write(client, resolved, writer, [{"customer": {**body["customer"],
                                                                "email": "Nova.Buyer@Example.com"}}])
    assert created.status == 201 and created.external_ids[0]
    for error in (retried.value, shouting.value):
        assert error.status == 422 and "email" in str(error) and "has already been taken" in str(error)
        assert TOKEN not in str(error)
    matching = [c for c in sandbox.emulator("shopify").dump("customers")
                if (c["email"] or "").lower() == "nova.buyer@example.com"]
    assert len(matching) == 1 and str(matching[0]["id"]) == created.external_ids[0]
    assert matching[0]["default_address"]["city"] == "Austin"

    results = _materialize(settings, "customers")
    assert str(matching[0]["id"]) in loaded_keys(settings, "shopify", "customers")
    assert _sum(results, "inserted", "customers") == len(_truth(sandbox, "customers"))


def test_sandbox_keeps_shopifys_pagination_rules(sandbox_server, sandbox):
    host = f"http://localhost:{sandbox_server.port}"
    with httpx.Client(base_url=host, headers=AUTH) as http:
        first = http.get(f"{API_ROOT}/customers.json",
                         params={"limit": 3, "updated_at_min": "2026-03-01T00:00:00+00:00"})
        assert first.status_code == 200 and len(first.json()["customers"]) == 3
        assert set(first.links) == {"next"}, "a first page has no previous link"
        next_url = first.links["next"]["url"]
        assert next_url.startswith(f"{host}{API_ROOT}/customers.json?"), "Link URLs point at the requested host"
        assert set(parse_qs(urlsplit(next_url).query)) == {"limit", "page_info"}

        second = http.get(next_url)
        assert second.status_code == 200 and set(second.links) == {"previous", "next"}
        assert second.json()["customers"][0]["id"] > first.json()["customers"][-1]["id"]
        back = http.get(second.links["previous"]["url"])
        assert [c["id"] for c in back.json()["customers"]] == [c["id"] for c in first.json()["customers"]]

        mixed = http.get(f"{next_url}&updated_at_min=2026-03-01T00%3A00%3A00%2B00%3A00")
        assert mixed.status_code == 400 and mixed.json() == {"errors": {"page_info": "Invalid value."}}
        forged = base64.urlsafe_b64encode(b'{"last_id": "x"}').decode()
        bad = http.get(f"{API_ROOT}/customers.json", params={"page_info": forged})
        assert bad.status_code == 400 and bad.json() == {"errors": {"page_info": "Invalid value."}}
        assert http.get(f"{API_ROOT}/customers.json", params={"limit": 251}).status_code == 400
        assert http.get(f"{API_ROOT}/customers.json", params={"limit": 0}).status_code == 400
        assert len(http.get(f"{API_ROOT}/customers.json").json()["customers"]) == min(
            50, len(_truth(sandbox, "customers"))), "default limit is 50"
        no_location = http.get(f"{API_ROOT}/inventory_levels.json")
        assert no_location.status_code == 422 and "errors" in no_location.json()
        assert http.get("/admin/api/2019-04/customers.json").json() == {"errors": "Not Found"}

    anonymous = httpx.get(f"{host}{API_ROOT}/customers.json")
    assert anonymous.status_code == 401 and anonymous.json() == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}


def test_call_limit_bucket_overflows_like_shopify_and_the_engine_waits_it_out(settings, sandbox):
    shop = sandbox.emulator("shopify")
    shop.set_call_limit(40, 2.0)
    started = time.monotonic()
    with httpx.Client(base_url=settings.sandbox_url, headers=AUTH) as http:
        answers = []
        while len(answers) < 100 and (not answers or answers[-1].status_code == 200):
            answers.append(http.get(f"{API_ROOT}/shop.json"))
    elapsed = time.monotonic() - started
    assert answers[0].headers["X-Shopify-Shop-Api-Call-Limit"] == "1/40"
    assert answers[1].headers["X-Shopify-Shop-Api-Call-Limit"] == "2/40"
    # 40 calls fill the bucket; whatever leaked (2 per second) while we called makes room for a few more
    assert 40 <= len(answers) - 1 <= 40 + 2 * elapsed + 1
    limited = answers[-1]
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2.0"
    assert limited.json() == {"errors": RATE_LIMIT_MESSAGE}
    assert limited.headers["X-Shopify-Shop-Api-Call-Limit"] == "40/40"

    # a full bucket (another app's calls): the engine honours Retry-After: 2.0 and then succeeds
    # (read directly rather than through Dagster, so the first call reaches a bucket that is still full)
    resolved = resolve_system(SYSTEM, settings)
    stream = SYSTEM.stream("inventory_levels")
    with build_client(resolved) as client:
        sandbox.state.clear_requests()
        shop.fill_bucket(40)
        started = time.monotonic()
        records = [r for page in read_pages(client, resolved, stream, ReadWindow()) for r in page.records]
    assert time.monotonic() - started >= 1.9
    statuses = [r["status"] for r in sandbox.state.request_log("shopify")]
    assert statuses[0] == 429 and statuses[-1] == 200
    assert sorted(r["admin_graphql_api_id"] for r in records) == _truth(sandbox, "inventory_levels")


def test_sandbox_rate_limit_fault_is_shopifys_429(sandbox_server, sandbox):
    sandbox.set_faults("shopify", rate_limit_rate=1.0, retry_after=2)
    limited = httpx.get(f"{sandbox_server.url}{API_ROOT}/orders.json", headers=AUTH)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2.0"
    assert limited.json() == {"errors": RATE_LIMIT_MESSAGE}
