"""The squareup SDK against the Square emulator, over real HTTP: list, retrieve, create, idempotent replay, update
(with `version` optimistic concurrency), delete, search, auth error, not found and an unknown endpoint.

Expected values are written by hand from Square's API reference (Customers API; error bodies
`{"errors": [{"category", "code", "detail", "field"?}]}`), never computed by the emulator's code.
"""

from __future__ import annotations

import httpx
import pytest
from square import Square
from square.core.api_error import ApiError

TOKEN = "FAKE-sandbox-square-access-token-integration-pipelines"  # the sandbox seller's (fake) access token
NO_RETRY = {"max_retries": 0}


@pytest.fixture
def client(sandbox_server, sandbox) -> Square:  # type: ignore[no-untyped-def]
    return Square(token=TOKEN, base_url=sandbox_server.url)


def test_list_retrieve_and_create(client):
    page = client.customers.list(limit=3)
    first = list(page.items or [])
    assert len(first) == 3 and page.has_next
    everyone = [c.id for c in client.customers.list(limit=3)]
    assert len(everyone) == len(set(everyone)) > 3

    made = client.customers.create(given_name="Ada", family_name="Lovelace", email_address="ada@example.com",
                                   reference_id="crm-1").customer
    assert made.version == 0, "a new customer profile starts at version 0"
    assert made.creation_source == "THIRD_PARTY" and made.created_at == made.updated_at
    got = client.customers.get(customer_id=made.id).customer
    assert (got.given_name, got.family_name, got.email_address, got.reference_id) == (
        "Ada", "Lovelace", "ada@example.com", "crm-1")
    assert made.id in [c.id for c in client.customers.list(limit=100)]


def test_idempotency_key_replays_the_first_answer(client, sandbox):
    first = client.customers.create(idempotency_key="sdk-square-1", given_name="Once",
                                    email_address="once@example.com").customer
    again = client.customers.create(idempotency_key="sdk-square-1", given_name="Once",
                                    email_address="once@example.com").customer
    assert again.id == first.id
    assert [c["id"] for c in sandbox.emulator("square").dump("customers")
            if c.get("email_address") == "once@example.com"] == [first.id]
    with pytest.raises(ApiError) as reused:
        client.customers.create(idempotency_key="sdk-square-1", given_name="Twice",
                                request_options=NO_RETRY)
    assert reused.value.status_code == 400
    assert reused.value.body["errors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert reused.value.body["errors"][0]["category"] == "INVALID_REQUEST_ERROR"


def test_update_is_sparse_and_versioned(client):
    made = client.customers.create(given_name="Grace", family_name="Hopper", email_address="grace@example.com",
                                   note="first").customer
    updated = client.customers.update(customer_id=made.id, note="second", version=0).customer
    assert updated.version == 1 and updated.note == "second"
    assert updated.given_name == "Grace" and updated.email_address == "grace@example.com", "fields left out stay"
    assert updated.updated_at > made.updated_at
    unversioned = client.customers.update(customer_id=made.id, family_name="Hopper-Murray").customer
    assert unversioned.version == 2, "without a version the latest one is assumed"

    with pytest.raises(ApiError) as stale:
        client.customers.update(customer_id=made.id, note="lost update", version=1, request_options=NO_RETRY)
    assert stale.value.status_code == 409 and stale.value.body["errors"][0]["code"] == "CONFLICT"
    assert client.customers.get(customer_id=made.id).customer.note == "second", "a refused update changes nothing"

    with pytest.raises(ApiError) as bad_email:
        client.customers.update(customer_id=made.id, email_address="not-an-email", request_options=NO_RETRY)
    assert bad_email.value.status_code == 400
    assert bad_email.value.body["errors"][0]["code"] == "INVALID_EMAIL_ADDRESS"
    assert bad_email.value.body["errors"][0]["field"] == "email_address"


def test_delete_removes_the_profile(client):
    made = client.customers.create(given_name="Temp", email_address="temp@example.com").customer
    with pytest.raises(ApiError) as stale:
        client.customers.delete(customer_id=made.id, version=5, request_options=NO_RETRY)
    assert stale.value.status_code == 409
    answer = client.customers.delete(customer_id=made.id, version=0)
    assert answer.errors is None
    with pytest.raises(ApiError) as gone:
        client.customers.get(customer_id=made.id, request_options=NO_RETRY)
    assert gone.value.status_code == 404
    assert gone.value.body == {"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "NOT_FOUND",
                                           "detail": f"Customer with ID `{made.id}` not found."}]}
    assert made.id not in [c.id for c in client.customers.list(limit=100)]
    with pytest.raises(ApiError) as twice:
        client.customers.delete(customer_id=made.id, request_options=NO_RETRY)
    assert twice.value.status_code == 404


def test_search_filters_by_exact_and_fuzzy_text(client):
    made = client.customers.create(given_name="Searchable", family_name="Person",
                                   email_address="Searchable.Person@Example.com", reference_id="ref-77").customer
    exact = client.customers.search(query={"filter": {"email_address": {"exact": "searchable.person@example.com"}}},
                                    count=True)
    assert [c.id for c in exact.customers or []] == [made.id] and exact.count == 1
    fuzzy = client.customers.search(query={"filter": {"reference_id": {"fuzzy": "ref-7"}}})
    assert [c.id for c in fuzzy.customers or []] == [made.id]
    nothing = client.customers.search(query={"filter": {"email_address": {"exact": "nobody@example.com"}}})
    assert nothing.customers is None, "Square answers an empty search with `{}`"


def test_bad_token_not_found_and_unknown_endpoint(client, sandbox_server):
    with pytest.raises(ApiError) as denied:
        Square(token="EAAA-FAKE-wrong-token", base_url=sandbox_server.url).customers.get(
            customer_id="ANY", request_options=NO_RETRY)
    assert denied.value.status_code == 401
    assert denied.value.body["errors"][0]["category"] == "AUTHENTICATION_ERROR"
    assert denied.value.body["errors"][0]["code"] == "UNAUTHORIZED"

    with pytest.raises(ApiError) as missing:
        client.customers.get(customer_id="NOSUCHCUSTOMER", request_options=NO_RETRY)
    assert missing.value.status_code == 404 and missing.value.body["errors"][0]["code"] == "NOT_FOUND"

    headers = {"Authorization": f"Bearer {TOKEN}"}
    unknown = httpx.get(f"{sandbox_server.url}/v2/nonexistent", headers=headers)
    assert unknown.status_code == 404 and unknown.json() == {"errors": [{
        "category": "INVALID_REQUEST_ERROR", "code": "NOT_FOUND",
        "detail": "API endpoint for URL path `/v2/nonexistent` and HTTP method `GET` is not found."}]}
    wrong_method = httpx.patch(f"{sandbox_server.url}/v2/customers/X", headers=headers, json={})
    assert wrong_method.status_code == 404 and wrong_method.json()["errors"][0]["code"] == "NOT_FOUND"
