"""stripe-python against the Stripe emulator, over real HTTP, for every call an integration makes in ordinary use:
list, retrieve, create, idempotent replay, update, delete, search, expand, auth error, not found, unknown URL.

Every expected value here is written by hand from Stripe's API reference (the shapes and messages it documents),
never computed by the emulator's code: the SDK and these literals are the judges.
"""

from __future__ import annotations

import httpx
import pytest
import stripe

KEY = "sk_test_FAKE_sandbox_key_integration_pipelines"  # the sandbox account's (fake) secret key


@pytest.fixture
def client(sandbox_server, sandbox) -> stripe.StripeClient:  # type: ignore[no-untyped-def]
    return stripe.StripeClient(KEY, base_addresses={"api": sandbox_server.url}, max_network_retries=0)


def _customers(client: stripe.StripeClient, tag: str, names: list[str]) -> list[stripe.Customer]:
    return [client.v1.customers.create(params={"email": f"{name.lower()}@{tag}.example.com", "name": name,
                                               "metadata": {"batch": tag}}) for name in names]


def test_list_retrieve_and_create(client):
    page = client.v1.customers.list(params={"limit": 3})
    assert page.object == "list" and page.url == "/v1/customers" and len(page.data) == 3 and page.has_more is True
    created_order = [c.created for c in page.data]
    assert created_order == sorted(created_order, reverse=True), "Stripe lists newest first"

    made = client.v1.customers.create(params={"email": "ada@lovelace.example.com", "name": "Ada Lovelace",
                                              "metadata": {"tier": "gold"}})
    assert made.id.startswith("cus_") and made.object == "customer" and made.livemode is False
    got = client.v1.customers.retrieve(made.id)
    assert (got.email, got.name, got.metadata.to_dict()) == ("ada@lovelace.example.com", "Ada Lovelace",
                                                             {"tier": "gold"})
    assert client.v1.customers.list(params={"limit": 1}).data[0].id == made.id, "the newest customer comes first"


def test_idempotent_create_replays_and_a_changed_body_is_refused(client, sandbox):
    params = {"email": "once@example.com", "name": "Only Once"}
    first = client.v1.customers.create(params=params, options={"idempotency_key": "sdk-stripe-1"})
    second = client.v1.customers.create(params=params, options={"idempotency_key": "sdk-stripe-1"})
    assert second.id == first.id
    assert second.last_response.headers.get("Idempotent-Replayed") == "true"
    assert [c["id"] for c in sandbox.emulator("stripe").dump("customers") if c["email"] == "once@example.com"] \
        == [first.id]
    with pytest.raises(stripe.IdempotencyError) as refused:
        client.v1.customers.create(params={**params, "name": "Someone Else"},
                                   options={"idempotency_key": "sdk-stripe-1"})
    assert refused.value.http_status == 400 and refused.value.error.type == "idempotency_error"


def test_update_merges_metadata_and_unsets_with_an_empty_string(client):
    made = client.v1.customers.create(params={"email": "upd@example.com", "metadata": {"a": "1", "b": "2"}})
    updated = client.v1.customers.update(made.id, params={"name": "Renamed", "metadata": {"b": "", "c": "3"}})
    assert updated.name == "Renamed" and updated.metadata.to_dict() == {"a": "1", "c": "3"}
    assert client.v1.customers.retrieve(made.id).name == "Renamed"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.customers.update(made.id, params={"favourite_colour": "blue"})  # type: ignore[typeddict-unknown-key]
    assert unknown.value.http_status == 400 and unknown.value.param == "favourite_colour"
    assert unknown.value.user_message == "Received unknown parameter: favourite_colour"


def test_delete_answers_the_deleted_stub_and_the_customer_leaves_lists(client):
    made = client.v1.customers.create(params={"email": "gone@example.com", "metadata": {"batch": "deleted"}})
    deleted = client.v1.customers.delete(made.id)
    assert deleted.to_dict() == {"id": made.id, "object": "customer", "deleted": True}
    # Stripe: retrieving a deleted customer returns a subset of it with `deleted: true`, not an error
    again = client.v1.customers.retrieve(made.id)
    assert again.to_dict() == {"id": made.id, "object": "customer", "deleted": True}
    assert made.id not in [c.id for c in client.v1.customers.list(params={"limit": 100}).auto_paging_iter()]
    assert client.v1.customers.search(params={"query": "metadata['batch']:'deleted'"}).data == []
    with pytest.raises(stripe.InvalidRequestError) as twice:
        client.v1.customers.delete(made.id)
    assert twice.value.http_status == 404 and twice.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as update_gone:
        client.v1.customers.update(made.id, params={"name": "Back"})
    assert update_gone.value.http_status == 404 and update_gone.value.code == "resource_missing"


def test_search_query_language_and_paging(client):
    ann, bob, cat = _customers(client, "srch", ["Ann", "Bob", "Cat"])
    client.v1.customers.update(bob.id, params={"metadata": {"tier": "gold"}})

    first = client.v1.customers.search(params={"query": "metadata['batch']:'srch'", "limit": 2})
    assert first.object == "search_result" and first.url == "/v1/customers/search"
    assert len(first.data) == 2 and first.has_more is True and isinstance(first.next_page, str)
    everything = [c.id for c in client.v1.customers.search(
        params={"query": "metadata['batch']:'srch'", "limit": 2}).auto_paging_iter()]
    assert sorted(everything) == sorted([ann.id, bob.id, cat.id])

    by_email = client.v1.customers.search(params={"query": "email:'ANN@srch.example.com'"})
    assert [c.id for c in by_email.data] == [ann.id], "exact matches ignore case"
    assert [c.id for c in client.v1.customers.search(
        params={"query": "metadata['batch']:'srch' AND metadata['tier']:'gold'"}).data] == [bob.id]
    either = client.v1.customers.search(params={"query": "name:'Ann' OR name:'Cat'"})
    assert sorted(c.id for c in either.data) == sorted([ann.id, cat.id])
    assert [c.id for c in client.v1.customers.search(
        params={"query": "email~'cat@srch' AND metadata['batch']:'srch'"}).data] == [cat.id]
    negated = client.v1.customers.search(params={"query": "metadata['batch']:'srch' AND -name:'Bob'"})
    assert sorted(c.id for c in negated.data) == sorted([ann.id, cat.id])
    created_after = client.v1.customers.search(
        params={"query": f"metadata['batch']:'srch' AND created>{ann.created - 1}"})
    assert len(created_after.data) == 3
    counted = client.v1.customers.search(params={"query": "metadata['batch']:'srch'", "expand": ["total_count"]})
    assert counted.total_count == 3

    with pytest.raises(stripe.InvalidRequestError) as bad_field:
        client.v1.customers.search(params={"query": "colour:'blue'"})
    assert bad_field.value.http_status == 400 and "unsupported search field" in str(bad_field.value)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.search(params={"query": "name:'Ann' AND email:'x@y.z' OR name:'Bob'"})


def test_charges_search_and_expand(client, sandbox):
    customer = client.v1.customers.create(params={"email": "payer@example.com", "name": "Payer"})
    charge = client.v1.charges.create(params={"amount": 4200, "currency": "usd", "customer": customer.id,
                                              "metadata": {"order": "sdk-42"}})
    found = client.v1.charges.search(params={"query": "metadata['order']:'sdk-42' AND amount>4000"})
    assert [c.id for c in found.data] == [charge.id]
    assert client.v1.charges.search(params={"query": "metadata['order']:'sdk-42' AND amount<4000"}).data == []
    assert [c.id for c in client.v1.charges.search(
        params={"query": f"customer:'{customer.id}' AND status:'succeeded'"}).data] == [charge.id]

    plain = client.v1.charges.retrieve(charge.id)
    assert plain.customer == customer.id, "without expand the field is the id"
    expanded = client.v1.charges.retrieve(charge.id, params={"expand": ["customer"]})
    assert expanded.customer.id == customer.id and expanded.customer.email == "payer@example.com"
    listed = client.v1.charges.list(params={"customer": customer.id, "expand": ["data.customer"]})
    assert listed.data[0].customer.name == "Payer"
    with pytest.raises(stripe.InvalidRequestError) as not_expandable:
        client.v1.charges.retrieve(charge.id, params={"expand": ["currency"]})
    assert not_expandable.value.http_status == 400 and "cannot be expanded" in str(not_expandable.value)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.charges.list(params={"expand": ["customer"]})  # a list expands `data.customer`

    client.v1.customers.delete(customer.id)
    after = client.v1.charges.retrieve(charge.id, params={"expand": ["customer"]})
    assert after.customer.to_dict() == {"id": customer.id, "object": "customer", "deleted": True}


def test_bad_key_not_found_and_unknown_url_answer_stripes_errors(client, sandbox_server):
    wrong = stripe.StripeClient("sk_test_FAKE_wrong_key_000000000000", base_addresses={"api": sandbox_server.url},
                                max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError) as denied:
        wrong.v1.customers.list()
    assert denied.value.http_status == 401 and denied.value.error.type == "invalid_request_error"
    assert denied.value.user_message == "Invalid API Key provided: sk_test************0000", \
        "Stripe shows the key's first seven and last four characters only"

    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_doesnotexist")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    assert missing.value.user_message == "No such customer: 'cus_doesnotexist'"

    headers = {"Authorization": f"Bearer {KEY}"}
    unknown = httpx.get(f"{sandbox_server.url}/v1/nonexistent", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": {
        "type": "invalid_request_error",
        "message": "Unrecognized request URL (GET: /v1/nonexistent). Please see https://stripe.com/docs or we can "
                   "help at https://support.stripe.com/."}}
    wrong_method = httpx.delete(f"{sandbox_server.url}/v1/charges/ch_123", headers=headers)
    assert wrong_method.status_code == 404
    assert wrong_method.json()["error"]["message"].startswith("Unrecognized request URL (DELETE: /v1/charges/ch_123)")
    with pytest.raises(stripe.InvalidRequestError) as raw:
        client.raw_request("get", "/v1/nonexistent")
    assert raw.value.http_status == 404


def test_balance_transactions_carry_each_charges_fee_and_each_refund(client):
    """Stripe's US price for a domestic card is 2.9% + 30¢ (stripe.com/pricing); a refund costs nothing and the
    charge's fee is not returned, so a refund's balance transaction is the negative amount with no fee."""
    customer = client.v1.customers.create(params={"email": "fees@example.com", "name": "Fee Payer"})
    charge = client.v1.charges.create(params={"amount": 10000, "currency": "usd", "customer": customer.id,
                                              "description": "Order 77"})
    assert isinstance(charge.balance_transaction, str) and charge.balance_transaction.startswith("txn_")
    txn = client.v1.balance_transactions.retrieve(charge.balance_transaction)
    assert (txn.object, txn.type, txn.reporting_category, txn.source, txn.currency) == \
        ("balance_transaction", "charge", "charge", charge.id, "usd")
    assert (txn.amount, txn.fee, txn.net) == (10000, 320, 9680), "$100.00 at 2.9% + 30¢: fee $3.20, net $96.80"
    assert [(d.type, d.amount, d.currency) for d in txn.fee_details] == [("stripe_fee", 320, "usd")]
    assert txn.available_on > txn.created and txn.status in ("pending", "available")
    expanded = client.v1.charges.retrieve(charge.id, params={"expand": ["balance_transaction"]})
    assert expanded.balance_transaction.id == txn.id and expanded.balance_transaction.fee == 320

    first = client.v1.refunds.create(params={"charge": charge.id, "amount": 1000})
    second = client.v1.refunds.create(params={"charge": charge.id, "amount": 500})
    for refund, amount in ((first, 1000), (second, 500)):
        moved = client.v1.balance_transactions.retrieve(refund.balance_transaction)
        assert (moved.type, moved.source, moved.amount, moved.fee, moved.net, moved.fee_details) == \
            ("refund", refund.id, -amount, 0, -amount, [])

    # a list: newest first, cursor paging by `starting_after`, `created`, `type`, `source` and `currency` filters
    mine = {"created": {"gte": charge.created}}
    paged = list(client.v1.balance_transactions.list(params={**mine, "limit": 1}).auto_paging_iter())
    assert sorted(t.id for t in paged) == sorted([txn.id, first.balance_transaction, second.balance_transaction])
    page = client.v1.balance_transactions.list(params={**mine, "limit": 2})
    assert page.object == "list" and page.url == "/v1/balance_transactions" and page.has_more is True
    refunds = client.v1.balance_transactions.list(params={**mine, "type": "refund"})
    assert sorted(t.source for t in refunds.data) == sorted([first.id, second.id])
    assert [t.id for t in client.v1.balance_transactions.list(params={"source": charge.id}).data] == [txn.id]
    assert [t.id for t in client.v1.balance_transactions.list(
        params={**mine, "currency": "usd", "type": "charge"}).data] == [txn.id]
    assert client.v1.balance_transactions.list(params={**mine, "currency": "eur"}).data == []
    with pytest.raises(stripe.InvalidRequestError) as too_many:
        client.v1.balance_transactions.list(params={"limit": 101})
    assert too_many.value.http_status == 400 and too_many.value.param == "limit"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.balance_transactions.retrieve("txn_doesnotexist")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


@pytest.mark.parametrize(("amount", "currency", "fee"), [
    (10000, "gbp", 170),  # stripe.com/gb/pricing: 1.5% + 20p for standard UK cards
    (10000, "eur", 175),  # stripe.com/de/pricing: 1.5% + 0.25 € for standard EEA cards
    (500, "usd", 45),     # 2.9% of $5.00 is 14.5¢: rounded half up to 15¢, + 30¢
])
def test_each_currency_is_priced_as_its_countrys_standard_card(client, amount, currency, fee):
    customer = client.v1.customers.create(params={"email": f"fees-{currency}@example.com"})
    charge = client.v1.charges.create(params={"amount": amount, "currency": currency, "customer": customer.id})
    txn = client.v1.balance_transactions.retrieve(charge.balance_transaction)
    assert (txn.currency, txn.amount, txn.fee, txn.net) == (currency, amount, fee, amount - fee)


def test_every_world_charge_has_its_balance_transaction(client, sandbox, sandbox_server):
    charges = sandbox.emulator("stripe").dump("charges")
    listed = {t.source: t for t in client.v1.balance_transactions.list(
        params={"type": "charge", "limit": 100}).auto_paging_iter()}
    assert {c["id"]: c["balance_transaction"] for c in charges} == {s: t.id for s, t in listed.items()}
    restricted = stripe.StripeClient("rk_test_FAKE_sandbox_charges_only_key_0000",
                                     base_addresses={"api": sandbox_server.url}, max_network_retries=0)
    with pytest.raises(stripe.PermissionError) as denied:
        restricted.v1.balance_transactions.list()
    assert "'rak_balance_read' permission" in str(denied.value)


# -- subscriptions (Stripe API reference: Subscriptions; API version 2025-09-30.clover, where the billing period is
# on the subscription's items since 2025-03-31.basil) ---------------------------------------------------------------

def _price(client: stripe.StripeClient, lookup_key: str) -> stripe.Price:
    [price] = client.v1.prices.list(params={"lookup_keys": [lookup_key]}).data
    return price


def test_subscriptions_create_retrieve_list_update_and_cancel(client, sandbox):
    customer = client.v1.customers.create(params={"email": "subscriber@example.com", "name": "Sub Scriber"})
    pro = _price(client, "pro-monthly-usd")
    assert (pro.nickname, pro.unit_amount, pro.currency, pro.recurring.interval, pro.type) == (
        "Pro monthly", 9900, "usd", "month", "recurring")

    made = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": pro.id}],
                                                  "metadata": {"crm": "c-1"}},
                                          options={"idempotency_key": "sdk-sub-1"})
    assert made.id.startswith("sub_") and made.object == "subscription" and made.status == "active"
    assert made.customer == customer.id and made.currency == "usd" and made.cancel_at_period_end is False
    assert made.canceled_at is None and made.trial_end is None and made.latest_invoice is None
    [item] = made["items"].data
    assert item.object == "subscription_item" and item.price.id == pro.id and item.quantity == 1
    assert item.current_period_start == made.created == made.start_date
    assert 28 * 86400 <= item.current_period_end - item.current_period_start <= 31 * 86400, "one calendar month"
    assert "current_period_end" not in made, "since 2025-03-31 the period is on the items only"
    again = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": pro.id}],
                                                   "metadata": {"crm": "c-1"}},
                                           options={"idempotency_key": "sdk-sub-1"})
    assert again.id == made.id, "a retried create with the same key makes one subscription"

    got = client.v1.subscriptions.retrieve(made.id, params={"expand": ["customer"]})
    assert got.customer.email == "subscriber@example.com" and got.metadata.to_dict() == {"crm": "c-1"}
    assert [s.id for s in client.v1.subscriptions.list(params={"customer": customer.id}).data] == [made.id]

    trial = client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": pro.id}],
                                                   "trial_period_days": 14})
    assert trial.status == "trialing" and trial.trial_end - trial.trial_start == 14 * 86400
    assert trial["items"].data[0].current_period_end == trial.trial_end, "the trial is the first period"
    ended = client.v1.subscriptions.update(trial.id, params={"trial_end": "now"})
    assert ended.status == "active" and ended.trial_end <= ended["items"].data[0].current_period_start

    leaving = client.v1.subscriptions.update(made.id, params={"cancel_at_period_end": True})
    assert leaving.status == "active" and leaving.cancel_at_period_end is True
    assert leaving.cancel_at == leaving["items"].data[0].current_period_end
    staying = client.v1.subscriptions.update(made.id, params={"cancel_at_period_end": False})
    assert staying.cancel_at_period_end is False and staying.cancel_at is None

    canceled = client.v1.subscriptions.cancel(trial.id)
    assert canceled.status == "canceled" and canceled.canceled_at is not None and canceled.ended_at is not None
    assert client.v1.subscriptions.retrieve(trial.id).status == "canceled"
    # the default list leaves canceled subscriptions out; `status=canceled` and `status=all` show them
    assert [s.id for s in client.v1.subscriptions.list(params={"customer": customer.id}).data] == [made.id]
    assert [s.id for s in client.v1.subscriptions.list(
        params={"customer": customer.id, "status": "canceled"}).data] == [trial.id]
    assert {s.id for s in client.v1.subscriptions.list(
        params={"customer": customer.id, "status": "all"}).auto_paging_iter()} == {made.id, trial.id}
    with pytest.raises(stripe.InvalidRequestError) as twice:
        client.v1.subscriptions.update(trial.id, params={"cancel_at_period_end": True})
    assert twice.value.http_status == 400 and "A canceled subscription can only update" in str(twice.value)

    types = [e["type"] for e in reversed(sandbox.emulator("stripe").events())
             if e["data"]["object"].get("id") in (made.id, trial.id)]
    assert types == ["customer.subscription.created", "customer.subscription.created",
                     "customer.subscription.updated", "customer.subscription.updated",
                     "customer.subscription.updated", "customer.subscription.deleted"]
    update = next(e for e in sandbox.emulator("stripe").events() if e["type"] == "customer.subscription.updated"
                  and e["data"]["object"]["id"] == made.id and e["data"]["object"]["cancel_at_period_end"])
    assert update["data"]["previous_attributes"] == {"cancel_at": None, "cancel_at_period_end": False,
                                                     "cancellation_details": {"reason": None}}


def test_subscription_lists_filter_page_and_refuse_as_stripe_does(client, sandbox):
    customer = client.v1.customers.create(params={"email": "many@example.com"})
    basic = _price(client, "basic-monthly-gbp")
    made = [client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": basic.id}]})
            for _ in range(3)]
    page = client.v1.subscriptions.list(params={"customer": customer.id, "limit": 2})
    assert page.object == "list" and page.url == "/v1/subscriptions" and len(page.data) == 2 and page.has_more
    listed = [s.id for s in client.v1.subscriptions.list(
        params={"customer": customer.id, "limit": 2}).auto_paging_iter()]
    assert sorted(listed) == sorted(s.id for s in made)
    assert len(client.v1.subscriptions.list(params={"price": basic.id, "customer": customer.id}).data) == 3
    assert client.v1.subscriptions.list(params={"customer": customer.id, "status": "trialing"}).data == []
    since = client.v1.subscriptions.list(params={"customer": customer.id, "created": {"gte": made[0].created}})
    assert len(since.data) == 3

    emulator = sandbox.emulator("stripe")
    emulator.set_subscription_status(made[0].id, "past_due")  # its renewal payment failed
    assert [s.id for s in client.v1.subscriptions.list(
        params={"customer": customer.id, "status": "past_due"}).data] == [made[0].id]
    changed = next(e for e in emulator.events() if e["type"] == "customer.subscription.updated"
                   and e["data"]["object"]["id"] == made[0].id)
    assert changed["data"]["previous_attributes"] == {"status": "active"}

    with pytest.raises(stripe.InvalidRequestError) as bad_status:
        client.v1.subscriptions.list(params={"status": "lapsed"})
    assert bad_status.value.http_status == 400 and bad_status.value.param == "status"
    with pytest.raises(stripe.InvalidRequestError) as no_price:
        client.v1.subscriptions.create(params={"customer": customer.id, "items": [{"price": "price_missing"}]})
    assert no_price.value.code == "resource_missing" and no_price.value.param == "items[0][price]"
    with pytest.raises(stripe.InvalidRequestError) as no_customer:
        client.v1.subscriptions.create(params={"customer": "cus_missing", "items": [{"price": basic.id}]})
    assert no_customer.value.code == "resource_missing" and no_customer.value.param == "customer"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.subscriptions.retrieve("sub_doesnotexist")
    assert missing.value.http_status == 404 and missing.value.user_message == "No such subscription: 'sub_doesnotexist'"

    client.v1.customers.delete(customer.id)  # Stripe cancels a deleted customer's subscriptions at once
    assert {s.status for s in client.v1.subscriptions.list(
        params={"customer": customer.id, "status": "all"}).auto_paging_iter()} == {"canceled"}


def test_the_world_has_a_subscription_in_every_status_on_its_customers(client, sandbox, sandbox_server):
    everything = list(client.v1.subscriptions.list(params={"status": "all", "limit": 100}).auto_paging_iter())
    assert sorted(s.status for s in everything) == ["active", "active", "active", "canceled", "past_due",
                                                    "trialing"]
    customers = {c["id"] for c in sandbox.emulator("stripe").dump("customers")}
    assert {s.customer for s in everything} <= customers
    assert len(client.v1.subscriptions.list(params={"limit": 100}).data) == 5, "canceled left out by default"
    restricted = stripe.StripeClient("rk_test_FAKE_sandbox_charges_only_key_0000",
                                     base_addresses={"api": sandbox_server.url}, max_network_retries=0)
    with pytest.raises(stripe.PermissionError) as denied:
        restricted.v1.subscriptions.list()
    assert "'rak_subscription_read' permission" in str(denied.value)
