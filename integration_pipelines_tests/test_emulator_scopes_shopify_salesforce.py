"""Shopify and Salesforce emulators enforce scopes and permissions as their vendors do (issue 15, least privilege),
over real HTTP: a read-only credential reads, and a write gets the vendor's own refusal; through the connector and
the sync engine, a read-only credential given for writes stops the sync with that refusal and the variable to fix.

- Shopify: a custom app's access scopes. A call needing a scope the app lacks is 403
  `{"errors": "[API] This action requires merchant approval for <scope> scope."}`; a GET needs `read_<resource>`,
  a write `write_<resource>`, and `write_` includes `read_`.
- Salesforce: the connected app's OAuth scopes (no `api` scope: 401 `INVALID_SESSION_ID` "This session is not
  valid for use with the REST API") and the integration user's object permissions (a write it may not make: 403
  `[{"message": "insufficient access rights on object id", "errorCode": "INSUFFICIENT_ACCESS_OR_READONLY"}]`).

The tokens are the emulators' own fake values (sandbox/shopify.py, sandbox/salesforce.py); the connectors know none.
"""

from __future__ import annotations

import duckdb
import httpx
import pytest

from integration_pipelines.connectors.errors import AuthError
from integration_pipelines.connectors.registry import get_system
from integration_pipelines.connectors.runtime import build_client, resolve_system
from integration_pipelines.connectors.writer import send_write
from integration_pipelines.sandbox.salesforce import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_NO_API_REFRESH_TOKEN,
    SANDBOX_READ_ONLY_REFRESH_TOKEN,
    SANDBOX_REFRESH_TOKEN,
)
from integration_pipelines.sandbox.shopify import SANDBOX_ACCESS_TOKEN
from integration_pipelines.syncs.engine import run_sync
from integration_pipelines.syncs.spec import SyncSpec
from integration_pipelines.warehouse.duckdb import Warehouse

SHOPIFY_ROOT = "/admin/api/2025-10"
SHOPIFY_READ_ONLY = "shpat_FAKE_sandbox_read_only_0000"
SHOPIFY_INVENTORY_ONLY = "shpat_FAKE_sandbox_inventory_only_0000"
DATA = "/services/data/v62.0"
REFUSED = [{"message": "insufficient access rights on object id", "errorCode": "INSUFFICIENT_ACCESS_OR_READONLY",
            "fields": []}]


# -- Shopify ------------------------------------------------------------------------------------------------------


def shopify(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{base_url}{SHOPIFY_ROOT}", timeout=10,
                        headers={"X-Shopify-Access-Token": token, "Accept": "application/json"})


def first_level(base_url: str) -> dict:
    with shopify(base_url, SANDBOX_ACCESS_TOKEN) as client:
        location = client.get("/shop.json").json()["shop"]["primary_location_id"]
        return client.get("/inventory_levels.json", params={"location_ids": location}).json()["inventory_levels"][0]


def test_a_read_only_shopify_app_reads_and_its_writes_get_shopifys_403(sandbox_server, sandbox):
    level = first_level(sandbox_server.url)
    with shopify(sandbox_server.url, SHOPIFY_READ_ONLY) as client:
        location = client.get("/shop.json").json()["shop"]["primary_location_id"]
        for path, params in (("/customers.json", {}), ("/orders.json", {"status": "any"}), ("/products.json", {}),
                             ("/inventory_levels.json", {"location_ids": location}), ("/locations.json", {}),
                             ("/customers/count.json", {})):
            assert client.get(path, params=params).status_code == 200, path
        refused = {
            "write_inventory": client.post("/inventory_levels/set.json", json={
                "location_id": location, "inventory_item_id": level["inventory_item_id"], "available": 999}),
            "write_customers": client.post("/customers.json", json={"customer": {"email": "scope@example.test"}}),
            "write_products": client.post("/products.json", json={"product": {"title": "FAKE scope test"}}),
        }
    for scope, answer in refused.items():
        assert answer.status_code == 403, scope
        assert answer.json() == {"errors": f"[API] This action requires merchant approval for {scope} scope."}
    after = first_level(sandbox_server.url)
    assert after["available"] == level["available"], "nothing was written"
    assert not [c for c in sandbox.emulator("shopify").dump("customers") if c.get("email") == "scope@example.test"]


def test_a_shopify_app_reads_only_what_its_scopes_name(sandbox_server, sandbox):
    level = first_level(sandbox_server.url)
    with shopify(sandbox_server.url, SHOPIFY_INVENTORY_ONLY) as client:
        customers = client.get("/customers.json")
        written = client.post("/inventory_levels/set.json", json={
            "location_id": level["location_id"], "inventory_item_id": level["inventory_item_id"], "available": 7})
    assert customers.status_code == 403
    assert customers.json() == {"errors": "[API] This action requires merchant approval for read_customers scope."}
    assert written.status_code == 200, written.text  # write_inventory (which also reads inventory)
    assert first_level(sandbox_server.url)["available"] == 7
    with shopify(sandbox_server.url, "shpat_FAKE_not_a_token") as client:
        assert client.get("/customers.json").status_code == 401  # an unknown token is still 401


@pytest.fixture
def live_shopify(settings, sandbox_server, monkeypatch):  # type: ignore[no-untyped-def]
    """Live mode: the "real" Shopify is the emulator; reads with every scope, writes with a read-only token."""
    monkeypatch.setenv("SHOPIFY_BASE_URL", sandbox_server.url)
    monkeypatch.setenv("SHOPIFY_SHOP", "acme-demo")
    monkeypatch.setenv("SHOPIFY_READ_ACCESS_TOKEN", SANDBOX_ACCESS_TOKEN)
    monkeypatch.setenv("SHOPIFY_WRITE_ACCESS_TOKEN", SHOPIFY_READ_ONLY)  # the mistake under test
    return settings


def test_the_shopify_connector_names_the_scope_and_the_write_variable(live_shopify, sandbox_server):
    level = first_level(sandbox_server.url)
    resolved = resolve_system(get_system("shopify"), live_shopify, purpose="write")
    assert resolved.mode == "live"
    writer = get_system("shopify").writer("set_inventory_levels")
    with build_client(resolved) as client, pytest.raises(AuthError) as caught:
        send_write(client, resolved, writer, [{"location_id": level["location_id"],
                                               "inventory_item_id": level["inventory_item_id"], "available": 3}])
    message = str(caught.value)
    assert "Shopify rejected our credentials (403" in message
    assert "This action requires merchant approval for write_inventory scope." in message
    assert "SHOPIFY_WRITE_ACCESS_TOKEN" in message and "SHOPIFY_READ_ACCESS_TOKEN" not in message
    assert SHOPIFY_READ_ONLY not in message
    assert first_level(sandbox_server.url)["available"] == level["available"]


def test_a_sync_into_shopify_with_a_read_only_write_token_stops_with_shopifys_words(live_shopify, sandbox_server):
    level = first_level(sandbox_server.url)
    spec = SyncSpec(
        name="stock_to_shopify_scope_test", title="Stock → Shopify", description="One level, set absolutely.",
        source_sql="SELECT * FROM main.stock", key="item", target="shopify", mode="upsert",
        create_writer="set_inventory_levels", update_writer="set_inventory_levels",
        payload={"location_id": "{location}", "inventory_item_id": "{item}", "available": "{available}"})
    live_shopify.data_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(live_shopify.warehouse_database) as con:
        con.execute("CREATE TABLE main.stock AS SELECT ?::BIGINT AS location, ?::BIGINT AS item, 11 AS available",
                    [level["location_id"], level["inventory_item_id"]])
    with pytest.raises(AuthError) as caught:
        run_sync(spec, Warehouse(live_shopify.warehouse_database), live_shopify, run_id="scope-test")
    assert "write_inventory scope" in str(caught.value) and "SHOPIFY_WRITE_ACCESS_TOKEN" in str(caught.value)
    assert first_level(sandbox_server.url)["available"] == level["available"]


# -- Salesforce ---------------------------------------------------------------------------------------------------


def salesforce_session(base_url: str, refresh_token: str) -> tuple[httpx.Client, str]:
    answer = httpx.post(f"{base_url}/services/oauth2/token", timeout=10, data={
        "grant_type": "refresh_token", "client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET,
        "refresh_token": refresh_token})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    client = httpx.Client(base_url=f"{body['instance_url']}{DATA}", timeout=10,
                          headers={"Authorization": f"Bearer {body['access_token']}"})
    return client, body["scope"]


def contacts_named(sandbox, last_name: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [c for c in sandbox.emulator("salesforce").dump("contacts") if c.get("LastName") == last_name]


def test_a_read_only_salesforce_user_reads_and_its_writes_get_insufficient_access(sandbox_server, sandbox):
    client, scope = salesforce_session(sandbox_server.url, SANDBOX_READ_ONLY_REFRESH_TOKEN)
    assert scope == "refresh_token api"
    with client:
        read = client.get("/query", params={"q": "SELECT Id, LastName FROM Contact ORDER BY Id LIMIT 1"})
        assert read.status_code == 200, read.text
        existing = read.json()["records"][0]["Id"]
        assert client.get(f"/sobjects/Contact/{existing}").status_code == 200
        contact = {"LastName": "FAKE-Scopetest", "Email": "scopetest@example.test"}
        refused = {
            "create": client.post("/sobjects/Contact", json=contact),
            "edit": client.patch(f"/sobjects/Contact/{existing}", json={"Title": "Changed"}),
            "delete": client.delete(f"/sobjects/Contact/{existing}"),
            "upsert": client.patch("/sobjects/Contact/External_Id__c/scopetest@example.test", json=contact),
            "collection upsert": client.patch("/composite/sobjects/Contact/External_Id__c", json={
                "allOrNone": False, "records": [{"attributes": {"type": "Contact"},
                                                 "External_Id__c": "scopetest@example.test", **contact}]}),
            "collection create": client.post("/composite/sobjects", json={
                "allOrNone": False, "records": [{"attributes": {"type": "Contact"}, **contact}]}),
        }
    for call, answer in refused.items():
        assert (answer.status_code, answer.json()) == (403, REFUSED), call
    assert contacts_named(sandbox, "FAKE-Scopetest") == []
    record = next(c for c in sandbox.emulator("salesforce").dump("contacts") if c["Id"] == existing)
    assert record["Title"] != "Changed" and not record["IsDeleted"]


def test_a_salesforce_app_without_the_api_scope_cannot_call_the_rest_api(sandbox_server, sandbox):
    client, scope = salesforce_session(sandbox_server.url, SANDBOX_NO_API_REFRESH_TOKEN)
    assert scope == "refresh_token id"
    with client:
        answer = client.get("/query", params={"q": "SELECT Id FROM Account LIMIT 1"})
    assert answer.status_code == 401
    assert answer.json() == [{"message": "This session is not valid for use with the REST API",
                              "errorCode": "INVALID_SESSION_ID"}]
    client, scope = salesforce_session(sandbox_server.url, SANDBOX_REFRESH_TOKEN)
    assert scope == "refresh_token api"
    with client:
        assert client.get("/query", params={"q": "SELECT Id FROM Account LIMIT 1"}).status_code == 200


def test_a_salesforce_user_who_may_edit_but_not_create_gets_per_record_results(sandbox_server, sandbox):
    emulator = sandbox.emulator("salesforce")
    refresh = emulator.connect(permissions={"Contact": {"read", "edit"}})
    existing = next(c for c in emulator.dump("contacts") if c.get("Email"))
    with emulator.sandbox.lock:  # give the known contact an external id, as the sync's upserts would have
        emulator.records["Contact"][existing["Id"]]["External_Id__c"] = "known@example.test"
    client, _ = salesforce_session(sandbox_server.url, refresh)
    with client:
        answer = client.patch("/composite/sobjects/Contact/External_Id__c", json={"allOrNone": False, "records": [
            {"attributes": {"type": "Contact"}, "External_Id__c": "known@example.test", "Title": "Edited"},
            {"attributes": {"type": "Contact"}, "External_Id__c": "new@example.test", "LastName": "FAKE-New"}]})
        accounts = client.get("/query", params={"q": "SELECT Id FROM Account LIMIT 1"})
    assert answer.status_code == 200, answer.text
    edited, created = answer.json()
    assert edited["success"] is True and edited["created"] is False
    assert created == {"success": False, "errors": [{"message": "insufficient access rights on object id",
                                                     "statusCode": "INSUFFICIENT_ACCESS_OR_READONLY",
                                                     "fields": []}]}
    assert contacts_named(sandbox, "FAKE-New") == []
    assert accounts.status_code == 400 and accounts.json()[0]["errorCode"] == "INVALID_TYPE"  # no Read on Account


@pytest.fixture
def live_salesforce(settings, sandbox_server, monkeypatch):  # type: ignore[no-untyped-def]
    """Live mode against the emulator: reads as the integration user, writes with a read-only user's token."""
    monkeypatch.setenv("SALESFORCE_BASE_URL", sandbox_server.url)
    monkeypatch.setenv("SALESFORCE_TOKEN_URL", f"{sandbox_server.url}/services/oauth2/token")
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", SANDBOX_CLIENT_ID)
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", SANDBOX_CLIENT_SECRET)
    monkeypatch.setenv("SALESFORCE_READ_REFRESH_TOKEN", SANDBOX_REFRESH_TOKEN)
    monkeypatch.setenv("SALESFORCE_WRITE_REFRESH_TOKEN", SANDBOX_READ_ONLY_REFRESH_TOKEN)  # the mistake under test
    return settings


def test_the_salesforce_connector_names_the_refusal_and_the_write_variable(live_salesforce, sandbox):
    resolved = resolve_system(get_system("salesforce"), live_salesforce, purpose="write")
    assert resolved.mode == "live"
    writer = get_system("salesforce").writer("upsert_contacts")
    record = {"attributes": {"type": "Contact"}, "External_Id__c": "scopetest@example.test",
              "LastName": "FAKE-Scopetest"}
    with build_client(resolved) as client, pytest.raises(AuthError) as caught:
        send_write(client, resolved, writer, [record])
    message = str(caught.value)
    assert "Salesforce rejected our credentials (403" in message
    assert "insufficient access rights on object id" in message
    assert "SALESFORCE_WRITE_REFRESH_TOKEN" in message and SANDBOX_READ_ONLY_REFRESH_TOKEN not in message
    assert contacts_named(sandbox, "FAKE-Scopetest") == []
    # the same connector reads with the read set
    with build_client(resolve_system(get_system("salesforce"), live_salesforce)) as reader:
        assert reader.request("GET", f"{DATA}/query", params={"q": "SELECT Id FROM Contact LIMIT 1"}).json()["records"]


def test_a_sync_into_salesforce_with_a_read_only_user_stops_with_salesforces_words(live_salesforce, sandbox):
    spec = SyncSpec(
        name="leads_to_salesforce_scope_test", title="Leads → Salesforce", description="Upsert by External_Id__c.",
        source_sql="SELECT 'scopetest@example.test' AS email, 'FAKE-Scopetest' AS last_name", key="email",
        target="salesforce", mode="upsert", create_writer="upsert_contacts", update_writer="upsert_contacts",
        payload={"attributes": {"type": "Contact"}, "External_Id__c": "{email}", "LastName": "{last_name}"})
    live_salesforce.data_dir.mkdir(parents=True, exist_ok=True)
    with pytest.raises(AuthError) as caught:
        run_sync(spec, Warehouse(live_salesforce.warehouse_database), live_salesforce, run_id="scope-test")
    assert "INSUFFICIENT_ACCESS" in str(caught.value) or "insufficient access rights" in str(caught.value)
    assert "SALESFORCE_WRITE_REFRESH_TOKEN" in str(caught.value)
    assert contacts_named(sandbox, "FAKE-Scopetest") == []
