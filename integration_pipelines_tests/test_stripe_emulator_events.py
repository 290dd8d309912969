"""The Stripe emulator's change feed, judged by the official stripe-python SDK: the Events API (`/v1/events`)
records every change to a charge, customer or invoice, so a refund made ten days after its charge, a dispute
or an edited customer reaches a reader that only reads what changed.

The emulator's clock is put at the world's anchor (March 2026) in every test, so the world's history is inside
the 30 days of events Stripe keeps; "ten days later" moves that clock forward. Expected values are written out.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import httpx
import pytest
import stripe

from integration_pipelines.sandbox.app import Sandbox
from integration_pipelines.sandbox.stripe import API_VERSION, SANDBOX_API_KEY, StripeEmulator, nest

from .conftest import ANCHOR

DAY = 24 * 3600
T0 = int(ANCHOR.timestamp())  # 2026-03-10T00:00:00Z, the end of the world's history


@pytest.fixture
def emulator(sandbox: Sandbox) -> StripeEmulator:
    stripe_emulator = sandbox.emulator("stripe")
    assert isinstance(stripe_emulator, StripeEmulator)
    stripe_emulator.set_clock(T0)
    return stripe_emulator


@pytest.fixture
def client(sandbox_server: Any) -> stripe.StripeClient:
    return stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": sandbox_server.url}, max_network_retries=0)


def _events(client: stripe.StripeClient, **params: Any) -> list[stripe.Event]:
    return list(client.v1.events.list(params={"limit": 100, **params}).auto_paging_iter())


def _customer(emulator: StripeEmulator) -> dict[str, Any]:
    return copy.deepcopy(emulator.dump("customers")[-1])  # the oldest customer of the world, as it is now


def _new_charge(client: stripe.StripeClient, emulator: StripeEmulator, amount: int = 5000) -> stripe.Charge:
    return client.v1.charges.create(params={"customer": _customer(emulator)["id"], "amount": amount,
                                            "currency": "usd", "metadata": {"order": "A-1"}})


def test_sdk_event_list_pages_through_the_world_history_newest_first(sandbox: Sandbox, sandbox_server: Any,
                                                                     emulator: StripeEmulator,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`stripe.Event.list(created={"gte": ...}).auto_paging_iter()`, the global-key style, over many pages."""
    monkeypatch.setattr(stripe, "api_key", SANDBOX_API_KEY)
    monkeypatch.setattr(stripe, "api_base", sandbox_server.url)
    monkeypatch.setattr(stripe, "max_network_retries", 0)
    since = T0 - 2 * DAY  # the last two of the world's three days
    sandbox.state.clear_requests()

    listed = list(stripe.Event.list(limit=7, created={"gte": since}).auto_paging_iter())

    truth = [e for e in emulator.events() if e["created"] >= since]
    assert [e.id for e in listed] == [e["id"] for e in truth]
    assert len(listed) == len({e.id for e in listed}) > 14, "at least three pages"
    assert all(a.created >= b.created for a, b in itertools.pairwise(listed))
    assert {e.type for e in listed} >= {"customer.created", "charge.succeeded", "invoice.created", "invoice.paid"}
    first = listed[0]
    assert first.object == "event" and first.api_version == API_VERSION == "2025-09-30.clover"
    assert first.livemode is False and first.pending_webhooks == 0
    assert first.request.id is None and first.request.idempotency_key is None  # history: nobody's API request
    queries = [r["query"] for r in sandbox.state.request_log("stripe") if r["path"] == "/v1/events"]
    assert len(queries) == -(-len(listed) // 7)
    assert all(f"created%5Bgte%5D={since}" in q for q in queries)
    assert all("starting_after=evt_" in q for q in queries[1:])


def test_every_world_object_has_its_creation_event_at_its_creation_time(emulator: StripeEmulator) -> None:
    events = emulator.events()
    for stream, type_ in (("customers", "customer.created"), ("charges", "charge.succeeded"),
                          ("invoices", "invoice.created")):
        created = {e["data"]["object"]["id"]: e["created"] for e in events if e["type"] == type_}
        assert created == {o["id"]: o["created"] for o in emulator.dump(stream)}
    paid = [i for i in emulator.dump("invoices") if i["paid"]]
    updates = {e["data"]["object"]["id"]: e["data"]["previous_attributes"] for e in events
               if e["type"] == "invoice.updated"}
    assert paid and set(updates) == {i["id"] for i in paid}
    assert all(p["status"] == "open" and p["paid"] is False and p["amount_paid"] == 0 for p in updates.values())


def test_a_refund_ten_days_after_the_charge_is_a_charge_refunded_event(client: stripe.StripeClient,
                                                                       emulator: StripeEmulator) -> None:
    charge = _new_charge(client, emulator)
    assert charge.status == "succeeded" and charge.amount == 5000 and charge.created >= T0
    emulator.advance_clock(10 * DAY)

    refund = client.v1.refunds.create(params={"charge": charge.id, "amount": 1500, "reason": "requested_by_customer",
                                              "metadata": {"ticket": "T-9"}},
                                      options={"idempotency_key": "refund-ten-days"})

    assert refund.object == "refund" and refund.id.startswith("re_") and refund.amount == 1500
    assert (refund.charge, refund.status, refund.reason, refund.currency) == (charge.id, "succeeded",
                                                                              "requested_by_customer", "usd")
    assert refund.metadata.to_dict() == {"ticket": "T-9"}
    assert refund.created >= charge.created + 10 * DAY
    [succeeded] = _events(client, type="charge.succeeded", created={"gte": T0})
    assert succeeded.data.object.id == charge.id and succeeded.data.object.amount_refunded == 0
    [refunded] = _events(client, type="charge.refunded")
    assert refunded.created >= charge.created + 10 * DAY
    assert refunded.data.object.id == charge.id
    assert (refunded.data.object.amount_refunded, refunded.data.object.refunded) == (1500, False)
    assert refunded.data.previous_attributes.to_dict() == {"amount_refunded": 0}
    assert refunded.request.id.startswith("req_") and refunded.request.idempotency_key == "refund-ten-days"
    [created] = _events(client, type="refund.created")
    assert created.data.object.id == refund.id and created.data.object.amount == 1500
    # the events are retrievable one by one, and the charge shows its refunds when asked to
    assert client.v1.events.retrieve(refunded.id).data.object.amount_refunded == 1500
    expanded = client.v1.charges.retrieve(charge.id, params={"expand": ["refunds"]})
    assert [r.id for r in expanded.refunds.data] == [refund.id] and expanded.amount_refunded == 1500
    assert "refunds" not in client.v1.charges.retrieve(charge.id)  # not there unless expanded, as since 2022-11-15
    assert [r.id for r in client.v1.refunds.list(params={"charge": charge.id}).data] == [refund.id]


def test_a_repeated_refund_with_the_same_idempotency_key_refunds_once(client: stripe.StripeClient,
                                                                      emulator: StripeEmulator) -> None:
    charge = _new_charge(client, emulator)
    params = {"charge": charge.id, "amount": 1000}
    first = client.v1.refunds.create(params=params, options={"idempotency_key": "refund-once"})
    second = client.v1.refunds.create(params=params, options={"idempotency_key": "refund-once"})

    assert first.id == second.id
    assert second.last_response.headers["Idempotent-Replayed"] == "true"
    assert client.v1.charges.retrieve(charge.id).amount_refunded == 1000
    assert len(_events(client, type="charge.refunded")) == 1
    assert len([r for r in emulator.dump("refunds") if r["charge"] == charge.id]) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.refunds.create(params={**params, "amount": 999}, options={"idempotency_key": "refund-once"})


def test_partial_refunds_add_up_and_stripe_refuses_more_than_the_rest(client: stripe.StripeClient,
                                                                      emulator: StripeEmulator) -> None:
    charge = _new_charge(client, emulator)
    client.v1.refunds.create(params={"charge": charge.id, "amount": 1500})
    client.v1.refunds.create(params={"charge": charge.id, "amount": 2000})
    assert client.v1.charges.retrieve(charge.id).amount_refunded == 3500

    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create(params={"charge": charge.id, "amount": 2000}, options={"idempotency_key": "rest"})
    assert too_much.value.http_status == 400 and too_much.value.param == "amount"
    assert too_much.value.user_message == ("Refund amount ($20.00) is greater than unrefunded amount on charge "
                                           "($15.00)")

    # a refused request stores no idempotent result, so its key may be used again for the right request
    rest = client.v1.refunds.create(params={"payment_intent": charge.payment_intent},  # no amount: the rest
                                    options={"idempotency_key": "rest"})
    assert rest.amount == 1500
    final = client.v1.charges.retrieve(charge.id)
    assert (final.amount_refunded, final.refunded) == (5000, True)
    refunded = _events(client, type="charge.refunded")
    assert [e.data.object.amount_refunded for e in refunded] == [5000, 3500, 1500]  # newest first
    assert [e.data.previous_attributes.to_dict() for e in refunded] == [
        {"amount_refunded": 3500, "refunded": False}, {"amount_refunded": 1500}, {"amount_refunded": 0}]
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create(params={"charge": charge.id})
    assert again.value.code == "charge_already_refunded"
    assert again.value.user_message == f"Charge {charge.id} has already been refunded."


def test_customer_update_is_a_customer_updated_event_with_previous_attributes(client: stripe.StripeClient,
                                                                            emulator: StripeEmulator) -> None:
    old = _customer(emulator)
    emulator.advance_clock(5 * DAY)
    updated = client.v1.customers.update(old["id"], params={"email": "new.address@example.com",
                                                             "metadata": {"tier": "gold"}})
    assert updated.email == "new.address@example.com"

    [event] = _events(client, type="customer.updated")
    assert event.data.object.id == old["id"] and event.data.object.email == "new.address@example.com"
    assert event.data.object.metadata.to_dict() == {"company": old["metadata"]["company"], "tier": "gold"}
    assert event.data.previous_attributes.to_dict() == {"email": old["email"], "metadata": {"tier": None}}
    assert event.created >= T0 + 5 * DAY and event.request.id.startswith("req_")
    # a customer's currency is Stripe's to set: an API update of it is refused, the first charge fixes it
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.customers.update(old["id"], params={"currency": "eur"})
    assert refused.value.param == "currency"
    assert refused.value.user_message == "Received unknown parameter: currency"


def test_the_first_charge_sets_a_new_customer_currency_with_an_event(client: stripe.StripeClient,
                                                                     emulator: StripeEmulator) -> None:
    customer = client.v1.customers.create(params={"email": "first.charge@example.com", "name": "First Charge"})
    assert customer.currency is None
    client.v1.charges.create(params={"customer": customer.id, "amount": 1999, "currency": "eur"})

    types = [e.type for e in _events(client, created={"gte": T0})]
    assert types == ["customer.updated", "charge.succeeded", "customer.created"]
    [update] = _events(client, type="customer.updated")
    assert update.data.object.currency == "eur" and update.data.previous_attributes.to_dict() == {"currency": None}


def test_a_dispute_is_a_charge_dispute_created_event(client: stripe.StripeClient, emulator: StripeEmulator,
                                                     sandbox_server: Any) -> None:
    charge = _new_charge(client, emulator, amount=4200)
    emulator.advance_clock(20 * DAY)
    dispute = emulator.open_dispute(charge.id, 4200, "product_not_received")

    [event] = _events(client, type="charge.dispute.*")
    assert event.type == "charge.dispute.created" and event.data.object.id == dispute["id"]
    shown = event.data.object
    assert (shown.object, shown.charge, shown.amount, shown.currency, shown.reason, shown.status) == (
        "dispute", charge.id, 4200, "usd", "product_not_received", "needs_response")
    assert shown.created == event.created >= charge.created + 20 * DAY
    assert client.v1.charges.retrieve(charge.id).disputed is True
    assert client.v1.disputes.retrieve(dispute["id"]).status == "needs_response"
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params={"charge": charge.id})
    assert refused.value.code == "charge_disputed"

    # the same through the sandbox's control API, as the activity simulator would do it
    other = _new_charge(client, emulator, amount=1000)
    answer = httpx.post(f"{sandbox_server.url}/_sandbox/stripe/disputes/simulate",
                        json={"charge": other.id, "reason": "fraudulent"})
    assert answer.status_code == 200 and answer.json()["amount"] == 1000 and answer.json()["charge"] == other.id
    assert len(_events(client, type="charge.dispute.created")) == 2


def test_touch_and_simulate_leave_events(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    [charge_id] = emulator.touch("charges", 1)
    [customer_id] = emulator.touch("customers", 1)
    [invoice_id] = emulator.touch("invoices", 1)
    charge = emulator.simulate("charges", {"email": _customer(emulator)["email"], "amount": 700,
                                           "currency": "usd", "invoice_number": "INV-9"})

    newest = _events(client, created={"gte": T0})
    assert [(e.type, e.data.object.id) for e in newest] == [
        ("charge.succeeded", charge["id"]), ("invoice.updated", invoice_id), ("customer.updated", customer_id),
        ("refund.created", newest[3].data.object.id), ("charge.refunded", charge_id)]
    assert newest[4].data.previous_attributes.amount_refunded == newest[4].data.object.amount_refunded - 100
    assert all(e.request.id is None for e in newest)  # made in the Dashboard / by Stripe, not through the API
    assert list(newest[1].data.previous_attributes.metadata.to_dict()) == ["touched"]


def test_events_older_than_thirty_days_are_not_served(client: stripe.StripeClient,
                                                      emulator: StripeEmulator) -> None:
    customer = _customer(emulator)
    event = next(e for e in emulator.events() if e["type"] == "customer.created"
                 and e["data"]["object"]["id"] == customer["id"])
    assert client.v1.events.retrieve(event["id"]).id == event["id"]

    emulator.set_clock(event["created"] + 30 * DAY + 1)
    assert event["id"] not in {e.id for e in _events(client)}
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.events.retrieve(event["id"])
    assert gone.value.http_status == 404 and gone.value.code == "resource_missing"

    emulator.set_clock(T0 + 31 * DAY)  # the whole world's history (three days before T0) is past retention
    assert _events(client) == []
    client.v1.customers.update(customer["id"], params={"name": "Renamed"})
    assert [e.type for e in _events(client)] == ["customer.updated"]


def test_type_filters_and_backward_paging(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    everything = _events(client)
    charges_only = _events(client, type="charge.*")
    assert charges_only and {e.type for e in charges_only} == {"charge.succeeded"}
    picked = _events(client, types=["customer.created", "invoice.paid"])
    assert {e.type for e in picked} == {"customer.created", "invoice.paid"}
    assert [e.id for e in picked] == [e.id for e in everything if e.type in {"customer.created", "invoice.paid"}]

    # ending_before walks back towards the newest, and the SDK yields it oldest-first from the cursor
    cursor = everything[10].id
    back = list(client.v1.events.list(params={"limit": 3, "ending_before": cursor}).auto_paging_iter())
    assert [e.id for e in back] == [e.id for e in reversed(everything[:10])]


def test_unknown_parameters_are_refused_as_stripe_does(client: stripe.StripeClient, emulator: StripeEmulator,
                                                       sandbox_server: Any) -> None:
    headers = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}
    with httpx.Client(base_url=sandbox_server.url, headers=headers) as http:
        answer = http.get("/v1/events", params={"limit": 3, "colour": "red"})
        assert answer.status_code == 400
        assert answer.json() == {"error": {"type": "invalid_request_error",
                                           "message": "Received unknown parameter: colour", "param": "colour"}}
        answer = http.get("/v1/charges", params={"limit": 3, "created[after]": "1"})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "created[after]"
        answer = http.get("/v1/events", params={"type": "charge.*", "types[]": "charge.refunded"})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "types"
        answer = http.get("/v1/events", params={"limit": 101})
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "limit"
        # what the project's own reader sends is accepted
        accepted = http.get("/v1/charges", params={"limit": 2, "created[gte]": T0 - 3 * DAY, "created[lt]": T0,
                                                   "expand[]": "data.refunds"})
        assert accepted.status_code == 200 and accepted.json()["data"][0]["refunds"]["object"] == "list"
        after = accepted.json()["data"][-1]["id"]
        assert http.get("/v1/charges", params={"limit": 2, "starting_after": after}).status_code == 200
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.charges.create(params={"customer": _customer(emulator)["id"], "amount": 100, "currency": "usd",
                                         "colour": "red"})
    assert refused.value.param == "colour" and refused.value.http_status == 400
    assert not [e for e in emulator.events() if e["created"] >= T0]  # a refused request changes nothing


def test_charge_create_refusals_and_invoice_update(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.charges.create(params={"customer": _customer(emulator)["id"], "currency": "usd"})
    assert missing.value.param == "amount" and missing.value.user_message == "Missing required param: amount."
    with pytest.raises(stripe.InvalidRequestError) as nobody:
        client.v1.charges.create(params={"customer": "cus_nobody", "amount": 100, "currency": "usd"})
    assert nobody.value.code == "resource_missing" and nobody.value.user_message == "No such customer: 'cus_nobody'"
    by_card = client.v1.charges.create(params={"source": "tok_visa", "amount": 2500, "currency": "gbp",
                                               "description": "Walk-in"})
    assert (by_card.customer, by_card.currency, by_card.description, by_card.paid) == (None, "gbp", "Walk-in", True)

    invoice = emulator.dump("invoices")[-1]
    old_due = invoice["due_date"]
    client.v1.invoices.update(invoice["id"], params={"due_date": old_due + DAY, "metadata": {"po": "PO-7"}})
    [event] = _events(client, type="invoice.updated", created={"gte": T0})
    assert event.data.object.due_date == old_due + DAY and event.data.object.metadata.po == "PO-7"
    assert event.data.previous_attributes.to_dict() == {"due_date": old_due, "metadata": {"po": None}}


def test_bracket_notation_nests_as_stripe_reads_it() -> None:
    pairs = [("metadata[a]", "1"), ("expand[0]", "x"), ("expand[1]", "y"), ("types[]", "p"), ("types[]", "q"),
             ("invoice_settings[custom_fields][0][name]", "n"), ("invoice_settings[custom_fields][0][value]", "v"),
             ("created[gte]", "5"), ("limit", "3")]
    assert nest(pairs) == {"metadata": {"a": "1"}, "expand": ["x", "y"], "types": ["p", "q"],
                           "invoice_settings": {"custom_fields": [{"name": "n", "value": "v"}]},
                           "created": {"gte": "5"}, "limit": "3"}
