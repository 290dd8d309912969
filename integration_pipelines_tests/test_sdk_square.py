"""The squareup SDK against the Square emulator, over real HTTP: list, retrieve, create, idempotent replay, update
(with `version` optimistic concurrency), delete, search, auth error, not found and an unknown endpoint.

Expected values are written by hand from Square's API reference (Customers API; error bodies
`{"errors": [{"category", "code", "detail", "field"?}]}`), never computed by the emulator's code.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta

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


# -- subscriptions (Square API reference: Subscriptions API; SubscriptionStatus PENDING, ACTIVE, CANCELED,
# DEACTIVATED, PAUSED; a cancel schedules the end of the billed period) --------------------------------------------

def _plan_variation(client, name: str) -> str:
    return next(v.id for v in client.catalog.list(types="SUBSCRIPTION_PLAN_VARIATION")
                if v.subscription_plan_variation_data.name == name)


def test_subscriptions_create_search_retrieve_and_cancel(client, sandbox):
    customer = client.customers.create(given_name="Sub", family_name="Scriber",
                                       email_address="square.subscriber@example.com").customer
    variations = list(client.catalog.list(types="SUBSCRIPTION_PLAN_VARIATION"))
    assert {v.type for v in variations} == {"SUBSCRIPTION_PLAN_VARIATION"}
    basic = next(v for v in variations if v.subscription_plan_variation_data.name == "Basic monthly")
    phase = basic.subscription_plan_variation_data.phases[0]
    assert (phase.cadence, phase.pricing.type, phase.pricing.price_money.amount,
            phase.pricing.price_money.currency) == ("MONTHLY", "STATIC", 2900, "USD")

    made = client.subscriptions.create(idempotency_key="sdk-square-sub-1", location_id="L1SANDBOX",
                                       customer_id=customer.id, plan_variation_id=basic.id).subscription
    today = datetime.now(UTC).date()
    assert made.status == "ACTIVE" and made.start_date == today.isoformat() and made.version == 1
    # the first month is billed at once: through the day before the same day of next month
    next_month = date(today.year + today.month // 12, today.month % 12 + 1, 1)
    renews = next_month.replace(day=min(today.day, calendar.monthrange(next_month.year, next_month.month)[1]))
    assert made.charged_through_date == (renews - timedelta(days=1)).isoformat()
    again = client.subscriptions.create(idempotency_key="sdk-square-sub-1", location_id="L1SANDBOX",
                                        customer_id=customer.id, plan_variation_id=basic.id).subscription
    assert again.id == made.id
    later = client.subscriptions.create(location_id="L1SANDBOX", customer_id=customer.id,
                                        plan_variation_id=_plan_variation(client, "Pro yearly"),
                                        start_date="2099-01-01").subscription
    assert later.status == "PENDING" and later.charged_through_date is None

    got = client.subscriptions.get(subscription_id=made.id).subscription
    assert (got.customer_id, got.plan_variation_id, got.location_id) == (customer.id, basic.id, "L1SANDBOX")
    found = client.subscriptions.search(query={"filter": {"customer_ids": [customer.id]}}).subscriptions
    assert [s.id for s in found] == [made.id, later.id], "by customer, then in order of creation"

    canceled = client.subscriptions.cancel(subscription_id=made.id)
    assert canceled.subscription.status == "ACTIVE" and canceled.subscription.canceled_date == renews.isoformat()
    assert [(a.type, a.effective_date) for a in canceled.actions] == [("CANCEL", renews.isoformat())]
    gone = client.subscriptions.cancel(subscription_id=later.id).subscription
    assert gone.status == "CANCELED", "a subscription that has not started is canceled at once"
    with pytest.raises(ApiError) as twice:
        client.subscriptions.cancel(subscription_id=later.id, request_options=NO_RETRY)
    assert twice.value.status_code == 400
    with pytest.raises(ApiError) as missing:
        client.subscriptions.get(subscription_id="no-such-subscription", request_options=NO_RETRY)
    assert missing.value.status_code == 404 and missing.value.body["errors"][0]["code"] == "NOT_FOUND"
    with pytest.raises(ApiError) as no_plan:
        client.subscriptions.create(location_id="L1SANDBOX", customer_id=customer.id,
                                    plan_variation_id="NOSUCHPLAN", request_options=NO_RETRY)
    assert no_plan.value.status_code == 400 and no_plan.value.body["errors"][0]["field"] == "plan_variation_id"


def test_the_world_has_a_square_subscription_in_every_status_and_search_pages(client, sandbox):
    pages = client.subscriptions.search(limit=2)
    first = list(pages.subscriptions or [])
    assert len(first) == 2 and pages.cursor
    everything = []
    cursor = None
    while True:
        page = client.subscriptions.search(limit=2, cursor=cursor)
        everything += page.subscriptions or []
        cursor = page.cursor
        if not cursor:
            break
    assert sorted(s.status for s in everything) == ["ACTIVE", "CANCELED", "DEACTIVATED", "PAUSED", "PENDING"]
    customers = {c["id"] for c in sandbox.emulator("square").dump("customers")}
    assert {s.customer_id for s in everything} <= customers
    assert [s.created_at for s in everything] == sorted(s.created_at for s in everything)
    assert client.subscriptions.search(query={"filter": {"customer_ids": ["NOBODY"]}}).subscriptions is None, \
        "an empty result is `{}`"
