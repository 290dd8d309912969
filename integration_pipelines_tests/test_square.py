"""Square end to end: sandbox over real HTTP → extract assets → DuckDB, the writers, and the squareup SDK as a judge.

Customers and the catalog are listed on the first read and searched for changes afterwards; payments are read per
day of creation and, once a partition has a cursor, filtered by `updated_at` too; orders and inventory counts use
one search whose change filter starts at the epoch on the first read; subscriptions are searched whole every time
(Square's search has no change filter). These tests pin every path, the `{}` empty page, Square's error bodies, and
the idempotency of both writers.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from square import Square
from square.core.api_error import ApiError as SquareSdkError

from integration_pipelines.connectors.errors import ApiError
from integration_pipelines.connectors.runtime import build_client, resolve_system
from integration_pipelines.connectors.square import LOOKBACK_SECONDS, SQUARE_VERSION, SYSTEM
from integration_pipelines.connectors.writer import send_write

from .conftest import PARTITIONS, loaded_keys, materialize_all_partitions, materialize_stream, warehouse_rows

#: The streams the seeded world fills; refunds are made in a test (test_refunds_are_read_per_day_of_creation...)
STREAMS = [s.name for s in SYSTEM.streams if s.name != "refunds"]
TOKEN = SYSTEM.values["access_token"].sandbox
EPOCH_ISO = "1970-01-01T00:00:00Z"
#: (method, path) of the first read and of a read after a cursor is stored
FULL_READ = {
    "customers": ("GET", "/v2/customers"),
    "payments": ("GET", "/v2/payments"),
    "orders": ("POST", "/v2/orders/search"),
    "catalog_items": ("GET", "/v2/catalog/list"),
    "inventory_counts": ("POST", "/v2/inventory/counts/batch-retrieve"),
    "subscription_plan_variations": ("GET", "/v2/catalog/list"),
    "subscriptions": ("POST", "/v2/subscriptions/search"),
    "refunds": ("GET", "/v2/refunds"),
}
CHANGE_READ = {**FULL_READ, "customers": ("POST", "/v2/customers/search"),
               "catalog_items": ("POST", "/v2/catalog/search"),
               "subscription_plan_variations": ("POST", "/v2/catalog/search")}


def _pk(stream: str) -> str:
    return SYSTEM.stream(stream).primary_key


def _truth(sandbox, stream: str) -> list[str]:
    return sorted(r[_pk(stream)] for r in sandbox.emulator("square").dump(stream))


def _requests(sandbox, stream: str) -> list[dict]:
    """Every request the sandbox logged for one stream's endpoints (the login's location lookup excluded)."""
    paths = {FULL_READ[stream][1], CHANGE_READ[stream][1]}
    return [r for r in sandbox.state.request_log("square") if r["path"] in paths]


def _run(settings, stream: str) -> dict[str, int]:
    """Materialize every partition of a stream and add up what the loads report."""
    totals = {"inserted": 0, "updated": 0, "unchanged": 0, "records_read": 0, "pages": 0}
    for result in materialize_all_partitions(settings, "square", stream):
        metadata = result.asset_materializations_for_node(f"square__{stream}")[0].metadata
        for name in totals:
            totals[name] += metadata[name].value
    return totals


def _small_pages(sandbox, monkeypatch) -> None:
    monkeypatch.setenv("SQUARE_PAGE_SIZE", "3")
    monkeypatch.setenv("SQUARE_REQUESTS_PER_SECOND", "1000")
    sandbox.emulator("square").catalog_page_size = 2  # ListCatalog takes no limit; its page size is Square's


@pytest.mark.parametrize("stream", STREAMS)
def test_full_read_pages_through_and_lands_exactly_the_sandbox_records(settings, sandbox, monkeypatch, stream):
    _small_pages(sandbox, monkeypatch)
    truth = _truth(sandbox, stream)
    assert len(truth) > 3, "the seeded world must fill several pages"
    totals = _run(settings, stream)
    assert loaded_keys(settings, "square", stream) == truth
    assert totals["inserted"] == len(truth) and totals["pages"] >= 2

    requests = _requests(sandbox, stream)
    assert {(r["method"], r["path"]) for r in requests} == {FULL_READ[stream]}
    assert all(r["status"] == 200 for r in requests)
    assert any("cursor=" in r["query"] for r in requests) or FULL_READ[stream][0] == "POST"
    searches = [body for path, body in sandbox.emulator("square").searches if path == FULL_READ[stream][1]]
    if FULL_READ[stream][0] == "POST":  # a first read asks for every change since the epoch, cursor in the body
        assert len(searches) >= 2 and sum("cursor" in body for body in searches) == len(searches) - 1
        if SYSTEM.stream(stream).cursor_field:  # (subscriptions: Square's search has no change filter)
            assert EPOCH_ISO in json.dumps(searches[0])

    raw, cursor, source = warehouse_rows(
        settings, f"SELECT _raw, _cursor, _source_system FROM raw_square.{stream} LIMIT 1")[0]
    record = json.loads(raw)
    cursor_field = SYSTEM.stream(stream).cursor_field
    assert source == "square"
    assert cursor == record[cursor_field] and cursor.endswith("Z") if cursor_field else cursor is None


def test_payments_are_partitioned_by_creation_day_and_empty_days_are_the_empty_object(settings, sandbox):
    by_day: dict[str, list[str]] = {}
    for payment in sandbox.emulator("square").dump("payments"):
        by_day.setdefault(payment["created_at"][:10], []).append(payment["id"])
    assert set(by_day) < set(PARTITIONS), "the world must leave at least one day without Square payments"
    with httpx.Client(base_url=settings.sandbox_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for day in PARTITIONS:
            page = http.get("/v2/payments", params={"begin_time": f"{day}T00:00:00Z",
                                                    "end_time": f"{day}T23:59:59.999Z"}).json()
            if day in by_day:
                assert sorted(p["id"] for p in page["payments"]) == sorted(by_day[day])
            else:
                assert page == {}, "Square answers an empty result with `{}`, not an empty list"
    sandbox.state.clear_requests()
    totals = _run(settings, "payments")
    assert totals["inserted"] == sum(len(ids) for ids in by_day.values())
    windows = [r["query"] for r in sandbox.state.request_log("square") if r["path"] == "/v2/payments"]
    assert len(windows) == len(PARTITIONS) and all("begin_time=" in q and "end_time=" in q for q in windows)


@pytest.mark.parametrize("stream", STREAMS)
def test_touched_records_are_read_with_the_change_filter_and_updated(settings, sandbox, monkeypatch, stream):
    _small_pages(sandbox, monkeypatch)
    _run(settings, stream)
    (stored_text,) = warehouse_rows(settings, f"SELECT max(_cursor) FROM raw_square.{stream}")[0]
    stored = datetime.fromisoformat(stored_text.replace("Z", "+00:00")) if stored_text else None
    touched = sandbox.emulator("square").touch(stream, 2)
    sandbox.state.clear_requests()
    sandbox.emulator("square").searches.clear()

    totals = _run(settings, stream)
    assert totals["updated"] == 2 and totals["inserted"] == 0
    assert loaded_keys(settings, "square", stream) == _truth(sandbox, stream)

    # the change filter starts a lookback before the stored cursor (the newest change the first read saw)
    since = (stored - timedelta(seconds=LOOKBACK_SECONDS)).strftime("%Y-%m-%dT%H:%M:%SZ") if stored else ""
    requests = _requests(sandbox, stream)
    if stream == "payments":  # per partition: only the day that held payments has a cursor
        days = {p["created_at"][:10] for p in sandbox.emulator("square").dump("payments")}
        filtered = [r["query"] for r in requests if r["query"].split("&")[0][len("begin_time="):][:10] in days]
        assert filtered and all(f"updated_at_begin_time={quote(since)}" in q and "sort_field=UPDATED_AT" in q
                                for q in filtered)
    elif stored is None:  # no change filter to send (subscriptions): the same whole read finds the change
        assert {(r["method"], r["path"]) for r in requests} == {CHANGE_READ[stream]}
        assert EPOCH_ISO not in json.dumps([body for _, body in sandbox.emulator("square").searches])
    else:
        assert {(r["method"], r["path"]) for r in requests} == {CHANGE_READ[stream]}
        bodies = json.dumps([body for _, body in sandbox.emulator("square").searches])
        assert EPOCH_ISO not in bodies and f'"{since}"' in bodies

    truth = {r[_pk(stream)]: r for r in sandbox.emulator("square").dump(stream)}
    for pk, raw in warehouse_rows(settings, f"SELECT _pk, _raw FROM raw_square.{stream} WHERE _pk IN (?, ?)",
                                  touched):
        assert json.loads(raw) == truth[pk]


@pytest.mark.parametrize("stream", STREAMS)
def test_rerun_with_nothing_changed_writes_nothing(settings, sandbox, monkeypatch, stream):
    monkeypatch.setenv("SQUARE_REQUESTS_PER_SECOND", "1000")
    _run(settings, stream)
    before = warehouse_rows(settings, f"SELECT _pk, _raw, _run_id FROM raw_square.{stream} ORDER BY _pk")
    totals = _run(settings, stream)
    assert totals["inserted"] == 0 and totals["updated"] == 0
    assert totals["unchanged"] == totals["records_read"]
    assert warehouse_rows(settings, f"SELECT _pk, _raw, _run_id FROM raw_square.{stream} ORDER BY _pk") == before


@pytest.mark.reliability
def test_twenty_percent_faults_still_land_exactly_the_sandbox_records(settings, sandbox, monkeypatch):
    _small_pages(sandbox, monkeypatch)
    monkeypatch.setenv("SQUARE_MAX_RETRIES", "12")
    sandbox.set_faults("square", error_rate=0.08, rate_limit_rate=0.08, drop_rate=0.04, retry_after=0, seed=11)
    for stream in STREAMS:
        _run(settings, stream)
        assert loaded_keys(settings, "square", stream) == _truth(sandbox, stream)
    for stream in STREAMS:  # the change-filter path under the same faults
        sandbox.emulator("square").touch(stream, 3)
        totals = _run(settings, stream)
        assert totals["updated"] == 3 and totals["inserted"] == 0
        assert loaded_keys(settings, "square", stream) == _truth(sandbox, stream)
    faults = [r for r in sandbox.state.request_log("square") if r["fault"]]
    assert {f["fault"] for f in faults} == {"error", "rate_limit", "drop"}
    assert any(f["method"] == "POST" for f in faults), "the search path must have been faulted too"


def test_square_error_body_surfaces_readable_without_the_token(settings, sandbox, monkeypatch):
    monkeypatch.setenv("SQUARE_PAGE_SIZE", "101")  # ListCustomers refuses a limit above 100
    failed = materialize_stream(settings, "square", "customers", raise_on_error=False)
    assert not failed.success
    text = failed.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "400" in text and "`limit` must be less than or equal to 100" in text
    assert TOKEN not in text and "Authorization" not in text


def test_wrong_token_names_the_variable_and_hides_the_token(settings, sandbox, monkeypatch):
    monkeypatch.setenv("SQUARE_ACCESS_TOKEN", "EAAA-FAKE-wrong-token-0123456789")
    monkeypatch.setenv("SQUARE_BASE_URL", settings.sandbox_url)
    result = materialize_stream(settings, "square", "customers", raise_on_error=False)
    assert not result.success
    text = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "SQUARE_ACCESS_TOKEN" in text and "401" in text and "This request could not be authorized." in text
    assert "EAAA-FAKE-wrong-token-0123456789" not in text


def test_create_customer_writer_is_idempotent_by_key(settings, sandbox):
    resolved = resolve_system(SYSTEM, settings)
    writer = SYSTEM.writer("create_customer")
    record = {"given_name": "Grace", "family_name": "Sync", "email_address": "grace.sync@example.com",
              "reference_id": "core-customer-42"}
    with build_client(resolved) as client:
        first = send_write(client, resolved, writer, [record], idempotency_key="sync:customers:core-customer-42")
        retried = send_write(client, resolved, writer, [record], idempotency_key="sync:customers:core-customer-42")
        with pytest.raises(ApiError) as reused:
            send_write(client, resolved, writer, [{**record, "family_name": "Other"}],
                       idempotency_key="sync:customers:core-customer-42")
    assert first.status == 200 and first.external_ids[0] and retried.external_ids == first.external_ids
    matching = [c for c in sandbox.emulator("square").dump("customers") if c.get("reference_id") == "core-customer-42"]
    assert len(matching) == 1 and matching[0]["id"] == first.external_ids[0]
    assert "can only be retried with the same request data" in str(reused.value)
    assert reused.value.status == 400 and "IDEMPOTENCY_KEY_REUSED" in reused.value.body


def test_inventory_changes_writer_sets_counts_and_never_applies_a_replay_twice(settings, sandbox):
    resolved = resolve_system(SYSTEM, settings)
    writer = SYSTEM.writer("inventory_changes")
    emulator = sandbox.emulator("square")
    first, second = emulator.dump("inventory_counts")[:2]

    def count(variation_id: str) -> str:
        return next(c["quantity"] for c in emulator.dump("inventory_counts") if c["catalog_object_id"] == variation_id)

    physical = {"type": "PHYSICAL_COUNT", "physical_count": {
        "catalog_object_id": first["catalog_object_id"], "location_id": "L1SANDBOX", "quantity": "12",
        "state": "IN_STOCK", "occurred_at": "2026-03-10T08:00:00Z"}}
    adjustment = {"type": "ADJUSTMENT", "adjustment": {
        "catalog_object_id": second["catalog_object_id"], "location_id": "L1SANDBOX", "quantity": "3",
        "from_state": "NONE", "to_state": "IN_STOCK", "occurred_at": "2026-03-10T08:00:00Z"}}
    start = int(second["quantity"])
    with build_client(resolved) as client:
        result = send_write(client, resolved, writer, [physical, adjustment], idempotency_key="stock:batch:1")
        assert count(first["catalog_object_id"]) == "12" and count(second["catalog_object_id"]) == str(start + 3)
        replay = send_write(client, resolved, writer, [physical, adjustment], idempotency_key="stock:batch:1")
        assert count(second["catalog_object_id"]) == str(start + 3), "a replayed ADJUSTMENT is not applied again"
        with pytest.raises(ApiError) as reused:
            send_write(client, resolved, writer, [adjustment], idempotency_key="stock:batch:1")
    assert sorted(result.external_ids) == sorted([first["catalog_object_id"], second["catalog_object_id"]])
    assert replay.body == result.body and len(emulator.inventory_changes) == 2
    assert "IDEMPOTENCY_KEY_REUSED" in reused.value.body


def test_official_sdk_reads_a_paginated_payments_list_unchanged(sandbox_server, sandbox):
    client = Square(token=TOKEN, base_url=sandbox_server.url, version=SQUARE_VERSION)
    pager = client.payments.list(begin_time="2026-03-01T00:00:00Z", sort_order="ASC", limit=2)
    pages = [[p.id for p in page.items or []] for page in pager.iter_pages()]
    truth = _truth(sandbox, "payments")
    seen = [pid for page in pages for pid in page]
    assert sorted(seen) == truth and len(seen) == len(set(seen))
    assert len(pages) == -(-len(truth) // 2) and all(len(page) == 2 for page in pages[:-1])
    payment = client.payments.get(seen[0]).payment
    assert payment.amount_money.amount > 0 and payment.order_id and payment.processing_fee

    customers = [c.email_address for c in client.customers.list(limit=5)]
    assert sorted(customers) == sorted(c["email_address"] for c in sandbox.emulator("square").dump("customers"))
    logged = [r for r in sandbox.state.request_log("square") if r["path"] == "/v2/payments"]
    assert len(logged) == len(pages) and all("cursor=" in r["query"] for r in logged[1:])

    with pytest.raises(SquareSdkError) as denied:
        Square(token="EAAA-FAKE-wrong", base_url=sandbox_server.url).locations.list(
            request_options={"max_retries": 0})
    assert denied.value.status_code == 401 and denied.value.body["errors"][0]["code"] == "UNAUTHORIZED"


def test_sandbox_answers_like_square_at_its_limits(sandbox_server, sandbox):
    headers = {"Authorization": f"Bearer {TOKEN}", "Square-Version": SQUARE_VERSION}
    with httpx.Client(base_url=sandbox_server.url, headers=headers) as http:
        too_big = http.get("/v2/customers", params={"limit": 101})
        assert too_big.status_code == 400
        assert too_big.json()["errors"][0] == {"category": "INVALID_REQUEST_ERROR", "code": "VALUE_TOO_HIGH",
                                               "detail": "`limit` must be less than or equal to 100.", "field": "limit"}
        ignored = http.get("/v2/payments", params={"limit": 500, "begin_time": "2026-03-01T00:00:00Z"})
        assert ignored.status_code == 200 and "cursor" not in ignored.json()  # > 100 is ignored, not refused

        bad_cursor = http.get("/v2/customers", params={"cursor": "not-a-cursor"})
        assert bad_cursor.json()["errors"][0]["code"] == "INVALID_CURSOR"
        first = http.get("/v2/customers", params={"limit": 2, "sort_field": "CREATED_AT"}).json()
        other_query = http.get("/v2/customers", params={"cursor": first["cursor"], "sort_field": "DEFAULT"})
        assert other_query.status_code == 400 and "original query" in other_query.json()["errors"][0]["detail"]

        mismatch = http.post("/v2/orders/search", json={"location_ids": ["L1SANDBOX"], "query": {
            "filter": {"date_time_filter": {"updated_at": {"start_at": EPOCH_ISO}}},
            "sort": {"sort_field": "CREATED_AT"}}})
        assert mismatch.status_code == 400 and mismatch.json()["errors"][0]["field"] == "query.sort.sort_field"
        no_location = http.post("/v2/orders/search", json={})
        assert no_location.json()["errors"][0]["code"] == "MISSING_REQUIRED_PARAMETER"

        bad_time = http.post("/v2/customers/search", json={"query": {"filter": {"updated_at": {"start_at": "x"}}}})
        assert bad_time.status_code == 400 and bad_time.json()["errors"][0]["code"] == "INVALID_TIME"
        nothing = http.post("/v2/catalog/search", json={"object_types": ["ITEM"], "begin_time": "2030-01-01T00:00:00Z"})
        assert "objects" not in nothing.json() and "latest_time" in nothing.json()

        main = http.get("/v2/locations/main").json()["location"]
        assert main["id"] == "L1SANDBOX" and http.get("/v2/locations").json()["locations"] == [main]
        skus = {o["item_data"]["variations"][0]["item_variation_data"]["sku"]
                for o in http.get("/v2/catalog/list", params={"types": "ITEM"}).json()["objects"]}
        assert skus == {p.sku for p in sandbox.state.world.products}

        bad_version = http.get("/v2/locations", headers={"Square-Version": "latest"})
        assert bad_version.json()["errors"][0]["code"] == "INVALID_SQUARE_VERSION_FORMAT"

    anonymous = httpx.get(f"{sandbox_server.url}/v2/customers")
    assert anonymous.status_code == 401
    assert anonymous.json()["errors"][0]["category"] == "AUTHENTICATION_ERROR"
    assert "Authorization" in anonymous.json()["errors"][0]["detail"]

    sandbox.set_faults("square", rate_limit_rate=1.0, retry_after=0)
    limited = httpx.get(f"{sandbox_server.url}/v2/customers", headers=headers)
    assert limited.status_code == 429
    assert limited.json()["errors"][0]["code"] == "RATE_LIMITED"
    assert limited.json()["errors"][0]["category"] == "RATE_LIMIT_ERROR"


def test_refunds_are_read_per_day_of_creation_and_land_exactly_the_sellers_refunds(settings, sandbox, monkeypatch):
    """Six partial refunds over two days (two on one payment), three to a page: ListPaymentRefunds filters and sorts
    by creation only, so each day is read whole, page by page, with its own window; a second read changes nothing."""
    _small_pages(sandbox, monkeypatch)
    square = sandbox.emulator("square")
    payments = [p["id"] for p in square.dump("payments")][:5]
    made = [square.simulate("refunds", {"payment": payment, "amount": 100, "at": f"2026-03-1{day}T1{n}:00:00Z"})
            for n, (payment, day) in enumerate([(p, 0) for p in payments[:4]] + [(p, 1) for p in payments[3:]])]
    assert len({r["payment_id"] for r in made}) == 5 and len(made) == 6
    sandbox.state.clear_requests()
    read = {}
    for day in ("2026-03-10", "2026-03-11"):
        metadata = materialize_stream(settings, "square", "refunds", day).asset_materializations_for_node(
            "square__refunds")[0].metadata
        read[day] = (metadata["inserted"].value, metadata["pages"].value)
    assert read == {"2026-03-10": (4, 2), "2026-03-11": (2, 1)}
    assert loaded_keys(settings, "square", "refunds") == sorted(r["id"] for r in made)
    queries = [r["query"] for r in _requests(sandbox, "refunds")]
    assert all("sort_order=ASC" in q for q in queries)
    assert {q.split("&")[0] for q in queries} == {"begin_time=2026-03-10T00%3A00%3A00Z",
                                                 "begin_time=2026-03-11T00%3A00%3A00Z"}
    again = materialize_stream(settings, "square", "refunds", "2026-03-10").asset_materializations_for_node(
        "square__refunds")[0].metadata
    assert (again["inserted"].value, again["updated"].value) == (0, 0)
