"""Scenario 9 acceptance: the subscription lifecycle at Stripe and Square reaches the customer's HubSpot contact as
`subscription_status`, `subscription_plan` and `subscription_renews_on`, read back through HubSpot's own API.

Subscriptions are made and changed through the processors' APIs with their official SDKs (stripe-python, squareup),
as the business would; the world's own (sandbox/world.py `_subscribe`, seed 7, anchored 2026-03-10) are its recorded
facts. Expected values are written out by hand from those facts and from what the test did; the one date taken from
a processor's answer (a Square subscription started today renews the day after its `charged_through_date`) is read
from Square itself, never from the warehouse or the sync.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
import stripe
from square import Square

from integration_pipelines.sandbox.hubspot import SANDBOX_TOKEN as HUBSPOT_TOKEN
from integration_pipelines.sandbox.square import LOCATION_ID
from integration_pipelines.sandbox.square import SANDBOX_ACCESS_TOKEN as SQUARE_TOKEN
from integration_pipelines.sandbox.stripe import SANDBOX_API_KEY

from .conftest import PARTITIONS, materialize_all_partitions, warehouse_rows
from .test_core_models import build
from .test_syncs import posts_to, sync

NAME = "subscription_status_to_hubspot"
PROPERTIES = ("subscription_status", "subscription_plan", "subscription_renews_on")
STREAMS = (("stripe", "customers"), ("stripe", "subscriptions"), ("stripe", "events"), ("square", "customers"),
           ("square", "subscription_plan_variations"), ("square", "subscriptions"), ("hubspot", "contacts"))

#: The world's subscribers (world facts) → what their HubSpot contact must say.
WORLD = {
    # Stripe
    "tim.turing26@initech2.example.com": ("trialing", "Pro monthly", "2026-03-22"),  # 14-day trial from 03-08
    "ken.allen18@initech6.example.com": ("active", "Basic monthly", "2026-04-09"),
    "dennis.goldwasser19@aperture7.example.com": ("past_due", "Team monthly", "2026-04-09"),  # renewal failed 03-09
    "alan.johnson32@tyrell8.example.com": ("active", "Pro yearly", "2027-03-09"),  # old Basic canceled, new Pro
    "sophie.hamilton13@pied1.example.com": ("active", "Pro monthly", None),  # canceled to end with its period
    # Square
    "sophie.hopper28@globex4.example.com": ("trialing", "Pro monthly", "2026-03-16"),  # PENDING, starts 03-16
    "tim.johnson17@wonka5.example.com": ("active", "Basic monthly", "2026-04-09"),
    "linus.ritchie37@pied1.example.com": ("past_due", "Team monthly", "2026-04-09"),  # DEACTIVATED
    "margaret.dijkstra15@umbrella3.example.com": ("canceled", "Pro monthly", None),
    "alan.lamarr36@hooli0.example.com": ("canceled", "Basic monthly", None),  # PAUSED
}
X = "linus.liskov22@stark10.example.com"  # a Stripe customer (USD): a subscription canceled, then a new one
Y = "grace.knuth11@aperture11.example.com"  # a Stripe customer (EUR): a 14-day trial
Z = "shafi.johnson23@aperture11.example.com"  # a Square customer: Team monthly from today
MIDDAY = datetime.fromisoformat(f"{PARTITIONS[-1]}T12:00:00+00:00")  # the world's last day, when X and Y subscribe


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")
    monkeypatch.setenv("HUBSPOT_REQUESTS_PER_SECOND", "100")


def extract_and_build(settings) -> None:
    for system, stream in STREAMS:
        materialize_all_partitions(settings, system, stream)
    build(settings)


def hubspot_contacts(url: str) -> dict[str, list[dict]]:
    """Every HubSpot contact's subscription properties by lower-cased email, through the CRM v3 list API."""
    found: dict[str, list[dict]] = {}
    after = None
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {HUBSPOT_TOKEN}"}) as http:
        while True:
            params = {"limit": 100, "properties": ",".join(("email", *PROPERTIES))}
            if after:
                params["after"] = after
            page = http.get("/crm/v3/objects/contacts", params=params)
            page.raise_for_status()
            body = page.json()
            for contact in body["results"]:
                email = (contact["properties"].get("email") or "").lower()
                found.setdefault(email, []).append(contact["properties"])
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return found


def shown(contacts: dict[str, list[dict]], email: str) -> set[tuple]:
    """What the customer's HubSpot contact(s) say (a set: a customer held twice shows the same on both)."""
    return {tuple(c.get(p) for p in PROPERTIES) for c in contacts[email]}


def stripe_customer(sandbox, email: str) -> dict:
    return next(c for c in sandbox.emulator("stripe").dump("customers") if c["email"] == email)


def square_customer(sandbox, email: str) -> dict:
    return next(c for c in sandbox.emulator("square").dump("customers") if c["email_address"] == email)


def test_each_subscribers_contact_shows_their_most_relevant_subscription_and_follows_its_changes(
        settings, sandbox, sandbox_server):
    url = sandbox_server.url
    payments = stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": url}, max_network_retries=0)
    seller = Square(token=SQUARE_TOKEN, base_url=url)
    emulator = sandbox.emulator("stripe")

    # on the world's last day: X takes Basic monthly and cancels it, then takes Pro yearly; Y starts a 14-day trial
    emulator.set_clock(MIDDAY.timestamp())
    x, y = stripe_customer(sandbox, X), stripe_customer(sandbox, Y)
    prices = {p.lookup_key: p.id for p in payments.v1.prices.list(params={"limit": 100}).auto_paging_iter()}
    old = payments.v1.subscriptions.create(params={"customer": x["id"],
                                                   "items": [{"price": prices["basic-monthly-usd"]}]})
    payments.v1.subscriptions.cancel(old.id)
    kept = payments.v1.subscriptions.create(params={"customer": x["id"],
                                                    "items": [{"price": prices["pro-yearly-usd"]}]})
    payments.v1.subscriptions.create(params={"customer": y["id"], "items": [{"price": prices["pro-monthly-eur"]}],
                                             "trial_period_days": 14})
    emulator.set_clock(datetime.now(UTC).timestamp())  # and back to today
    # today: Z subscribes to Team monthly at Square
    variation = next(v.id for v in seller.catalog.list(types="SUBSCRIPTION_PLAN_VARIATION")
                     if v.subscription_plan_variation_data.name == "Team monthly")
    square_sub = seller.subscriptions.create(idempotency_key="s9-acceptance-z", location_id=LOCATION_ID,
                                             customer_id=square_customer(sandbox, Z)["id"],
                                             plan_variation_id=variation).subscription
    assert square_sub.status == "ACTIVE"
    z_renews = (date.fromisoformat(square_sub.charged_through_date) + timedelta(days=1)).isoformat()

    extract_and_build(settings)
    before = hubspot_contacts(url)
    first = sync(settings, NAME)
    assert first.failed == 0
    contacts = hubspot_contacts(url)
    assert sorted(contacts) == sorted(before), "the sync never creates or removes a contact"
    for email, expected in WORLD.items():
        assert shown(contacts, email) == {expected}, email
    assert shown(contacts, X) == {("active", "Pro yearly", "2027-03-09")}  # the canceled Basic does not count
    assert shown(contacts, Y) == {("trialing", "Pro monthly", "2026-03-23")}
    assert shown(contacts, Z) == {("active", "Team monthly", z_renews)}
    subscribers = {*WORLD, X, Y, Z}
    untouched = {email: shown(contacts, email) for email in contacts if email not in subscribers}
    assert all(values == {(None, None, None)} for values in untouched.values()), untouched
    assert first.updated == sum(len(contacts[email]) for email in subscribers)

    # X's renewal payment fails (Stripe moves it to past_due); Z cancels at Square (it runs to its period's end)
    emulator.set_subscription_status(kept.id, "past_due")
    canceled = seller.subscriptions.cancel(subscription_id=square_sub.id).subscription
    assert canceled.status == "ACTIVE" and canceled.canceled_date == z_renews
    extract_and_build(settings)
    second = sync(settings, NAME)
    assert (second.updated, second.failed) == (len(contacts[X]) + len(contacts[Z]), 0)
    contacts = hubspot_contacts(url)
    assert shown(contacts, X) == {("past_due", "Pro yearly", "2027-03-09")}
    assert shown(contacts, Z) == {("active", "Team monthly", None)}
    for email, expected in WORLD.items():
        assert shown(contacts, email) == {expected}, email

    # nothing changed: a new read and run send nothing
    extract_and_build(settings)
    sandbox.state.clear_requests()
    third = sync(settings, NAME)
    assert third.plan.counts()["updates"] == 0 and posts_to(sandbox, "hubspot") == []


def test_switching_the_sync_on_leaves_subscriptions_that_stood_still_alone(settings, sandbox, monkeypatch):
    """The start rule: with the sync's start after every subscription's last change, nothing is sent."""
    extract_and_build(settings)
    monkeypatch.setenv("IP_SYNC_SUBSCRIPTION_STATUS_TO_HUBSPOT_START", "2999-01-01")
    sandbox.state.clear_requests()
    result = sync(settings, NAME)
    held = warehouse_rows(settings, "SELECT count(*) FROM core.subscriptions WHERE golden_customer_id IS NOT NULL")
    assert held[0][0] > 0 and result.plan.before_start > 0
    assert (result.updated, posts_to(sandbox, "hubspot")) == (0, [])
