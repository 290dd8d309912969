"""The Shopify emulator as a REST client meets it, over real HTTP with httpx (no official Shopify Python SDK is in
the dev environment): list, retrieve, create, update, delete, search, count, auth error, not found and unknown
endpoints. Shopify's REST Admin API has no idempotency key; the replay-safe writes are its uniqueness rules (a
repeated customer create is a 422, not a second customer) and absolute inventory sets.

Expected values are written by hand from Shopify's REST Admin API reference (envelopes `{"customer": {...}}`,
errors `{"errors": "Not Found"}` / `{"errors": {"field": ["message"]}}`), never computed by the emulator's code.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

TOKEN = "shpat_FAKE_sandbox_token_integration_pipelines"  # the shop's (fake) Admin API access token
ROOT = "/admin/api/2025-10"


@pytest.fixture
def shop(sandbox_server, sandbox) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    sandbox.emulator("shopify").set_call_limit(100_000, 10_000.0)
    with httpx.Client(base_url=sandbox_server.url + ROOT, headers={"X-Shopify-Access-Token": TOKEN}) as client:
        yield client


def test_list_retrieve_and_create_customers(shop):
    page = shop.get("/customers.json", params={"limit": 2})
    assert page.status_code == 200 and len(page.json()["customers"]) == 2 and 'rel="next"' in page.headers["Link"]
    ids = [c["id"] for c in page.json()["customers"]]
    assert ids == sorted(ids)

    made = shop.post("/customers.json", json={"customer": {"first_name": "Ada", "last_name": "Lovelace",
                                                           "email": "ada@example.com", "tags": "vip"}})
    assert made.status_code == 201
    customer = made.json()["customer"]
    assert (customer["first_name"], customer["email"], customer["orders_count"], customer["total_spent"]) == (
        "Ada", "ada@example.com", 0, "0.00")
    got = shop.get(f"/customers/{customer['id']}.json")
    assert got.status_code == 200 and got.json() == {"customer": customer}
    only = shop.get(f"/customers/{customer['id']}.json", params={"fields": "id,email"}).json()
    assert only == {"customer": {"id": customer["id"], "email": "ada@example.com"}}

    replay = shop.post("/customers.json", json={"customer": {"first_name": "Ada", "email": "ada@example.com"}})
    assert replay.status_code == 422 and replay.json() == {"errors": {"email": ["has already been taken"]}}
    before = shop.get("/customers/count.json").json()["count"]
    assert isinstance(before, int) and before > 2


def test_update_and_delete_a_customer(shop):
    customer = shop.post("/customers.json", json={"customer": {"first_name": "Grace",
                                                               "email": "grace@example.com"}}).json()["customer"]
    updated = shop.put(f"/customers/{customer['id']}.json",
                       json={"customer": {"id": customer["id"], "note": "Prefers email", "orders_count": 99}})
    assert updated.status_code == 200
    body = updated.json()["customer"]
    assert body["note"] == "Prefers email" and body["first_name"] == "Grace"
    assert body["orders_count"] == 0, "read-only fields are not written"

    other = shop.post("/customers.json", json={"customer": {"email": "taken@example.com"}}).json()["customer"]
    clash = shop.put(f"/customers/{customer['id']}.json", json={"customer": {"email": "TAKEN@example.com"}})
    assert clash.status_code == 422 and clash.json() == {"errors": {"email": ["has already been taken"]}}

    count = shop.get("/customers/count.json").json()["count"]
    deleted = shop.delete(f"/customers/{other['id']}.json")
    assert deleted.status_code == 200 and deleted.json() == {}
    assert shop.get(f"/customers/{other['id']}.json").json() == {"errors": "Not Found"}
    assert shop.get("/customers/count.json").json() == {"count": count - 1}
    assert shop.delete(f"/customers/{other['id']}.json").status_code == 404


def test_a_customer_who_has_ordered_cannot_be_deleted(shop):
    order = shop.get("/orders.json", params={"status": "any", "limit": 1}).json()["orders"][0]
    assert shop.get(f"/orders/{order['id']}.json").json()["order"]["id"] == order["id"]
    refused = shop.delete(f"/customers/{order['customer']['id']}.json")
    assert refused.status_code == 422 and "base" in refused.json()["errors"]
    assert shop.get(f"/customers/{order['customer']['id']}.json").status_code == 200


def test_products_create_update_delete(shop):
    made = shop.post("/products.json", json={"product": {"title": "Brass Gear", "product_type": "Parts",
                                                         "variants": [{"price": "12.50", "sku": "GEAR-B"}]}})
    assert made.status_code == 201
    product = made.json()["product"]
    assert product["title"] == "Brass Gear" and product["status"] == "active" and product["handle"] == "brass-gear"
    assert [(v["price"], v["sku"]) for v in product["variants"]] == [("12.50", "GEAR-B")]
    assert shop.post("/products.json", json={"product": {"body_html": "no title"}}).json() == {
        "errors": {"title": ["can't be blank"]}}

    renamed = shop.put(f"/products/{product['id']}.json", json={"product": {"title": "Bronze Gear"}})
    assert renamed.status_code == 200 and renamed.json()["product"]["title"] == "Bronze Gear"
    assert shop.get(f"/products/{product['id']}.json").json()["product"]["title"] == "Bronze Gear"
    listed = [p["id"] for p in shop.get("/products.json", params={"limit": 250}).json()["products"]]
    assert product["id"] in listed

    assert shop.delete(f"/products/{product['id']}.json").json() == {}
    gone = shop.get(f"/products/{product['id']}.json")
    assert gone.status_code == 404 and gone.json() == {"errors": "Not Found"}


def test_customer_search(shop):
    ann = shop.post("/customers.json", json={"customer": {"first_name": "Annabel", "last_name": "Search",
                                                          "email": "annabel@search.example.com",
                                                          "tags": "wholesale, vip"}}).json()["customer"]
    shop.post("/customers.json", json={"customer": {"first_name": "Bertram", "last_name": "Search",
                                                    "email": "bertram@search.example.com"}})
    by_email = shop.get("/customers/search.json", params={"query": "email:ANNABEL@search.example.com"})
    assert by_email.status_code == 200 and [c["id"] for c in by_email.json()["customers"]] == [ann["id"]]
    by_name = shop.get("/customers/search.json", params={"query": "last_name:search"}).json()["customers"]
    assert sorted(c["first_name"] for c in by_name) == ["Annabel", "Bertram"]
    assert [c["id"] for c in shop.get("/customers/search.json", params={
        "query": "last_name:search tag:vip"}).json()["customers"]] == [ann["id"]]
    assert shop.get("/customers/search.json", params={"query": "email:nobody@nowhere.example"}).json() == {
        "customers": []}


def test_bad_token_not_found_and_unknown_endpoints(shop, sandbox_server):
    denied = httpx.get(f"{sandbox_server.url}{ROOT}/customers.json",
                       headers={"X-Shopify-Access-Token": "shpat_FAKE_wrong"})
    assert denied.status_code == 401 and denied.json() == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
    missing = shop.get("/customers/1.json")
    assert missing.status_code == 404 and missing.json() == {"errors": "Not Found"}
    assert shop.get("/nonexistent.json").json() == {"errors": "Not Found"}
    wrong_method = shop.delete(f"/orders/{1}.json")
    assert wrong_method.status_code == 404 and wrong_method.json() == {"errors": "Not Found"}
