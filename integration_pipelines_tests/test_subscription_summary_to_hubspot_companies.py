"""Scenario 9, the company side: the subscriptions of a HubSpot company's people reach the company as
`subscription_status`, `active_subscriptions` and `subscription_renews_on`, read back through HubSpot's own API.

The facts are the sandbox world's (sandbox/world.py `_subscribe`, seed 7, anchored 2026-03-10; HubSpot ids from
sandbox/hubspot.py's seeded portal, where each CRM person's contact is associated with their company), written out
by hand. Changes are made as the business would make them: a contact created in HubSpot through its API, and a
subscription taken out and another canceled at Stripe through stripe-python.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import stripe

from integration_pipelines.sandbox.hubspot import SANDBOX_TOKEN as HUBSPOT_TOKEN
from integration_pipelines.sandbox.stripe import SANDBOX_API_KEY
from integration_pipelines.webhooks.notices import streams_for_notice

from .conftest import PARTITIONS, materialize_all_partitions
from .target_api import hubspot_get
from .test_core_models import build
from .test_syncs import posts_to, sync

NAME = "subscription_summary_to_hubspot_companies"
PROPERTIES = ("subscription_status", "active_subscriptions", "subscription_renews_on")
STREAMS = (("stripe", "customers"), ("stripe", "subscriptions"), ("stripe", "events"), ("square", "customers"),
           ("square", "subscription_plan_variations"), ("square", "subscriptions"), ("hubspot", "contacts"),
           ("hubspot", "contact_companies"))

#: HubSpot company id → (name, subscription_status, active_subscriptions, subscription_renews_on), from the world's
#: subscriptions of the company's people (their contacts are associated with it):
WORLD = {
    # Pied Piper Ltd: sophie.hamilton13 (Stripe Pro monthly, active, canceled to end with its period: no renewal)
    # and linus.ritchie37 (Square Team monthly, DEACTIVATED = past_due, renews 2026-04-09): two people, two states,
    # the better one shows; both are billed, and the only renewal is linus's.
    "48900318485": ("Pied Piper Ltd", "active", "2", "2026-04-09"),
    # Initech & Co: tim.turing26, Stripe Pro monthly, trialing (14 days from 2026-03-08): a trial is not counted
    "54636613407": ("Initech & Co", "trialing", "0", "2026-03-22"),
    # Initech GmbH: ken.allen18, Stripe Basic monthly, active since 2026-03-09
    "65789911353": ("Initech GmbH", "active", "1", "2026-04-09"),
    # Aperture Ltd: dennis.goldwasser19, Stripe Team monthly, past_due (its renewal failed 2026-03-09)
    "56201023782": ("Aperture Ltd", "past_due", "1", "2026-04-09"),
    # Tyrell Ltd: alan.johnson32, Stripe Basic monthly canceled, then Pro yearly active: the canceled one counts nothing
    "51452635415": ("Tyrell Ltd", "active", "1", "2027-03-09"),
    # Globex & Co: sophie.hopper28, Square Pro monthly, PENDING (= trialing) until it starts 2026-03-16
    "13337609264": ("Globex & Co", "trialing", "0", "2026-03-16"),
    # Wonka Ltd: tim.johnson17, Square Basic monthly, ACTIVE
    "18555918663": ("Wonka Ltd", "active", "1", "2026-04-09"),
    # Umbrella Inc: margaret.dijkstra15, Square Pro monthly, CANCELED
    "64639961274": ("Umbrella Inc", "canceled", "0", None),
    # Hooli LLC: alan.lamarr36, Square Basic monthly, PAUSED (= canceled: nothing is billed)
    "24565092370": ("Hooli LLC", "canceled", "0", None),
}
#: Companies none of whose people subscribes: never written. Stark Inc is where the test's unassociated contact
#: (below) would land if the sync matched by the `company` text or the email domain instead of the association.
STARK = "49049387039"
UNTOUCHED = {"56839710513": "Umbrella LLC", STARK: "Stark Inc", "75733298005": "Aperture LLC"}
PIED_PIPER = "48900318485"
#: A Stripe customer (USD) HubSpot does not know in the world: the test creates her contact through HubSpot's API with
#: `company: Stark Inc` typed in and an address at stark10.example.com (Stark Inc's domain), but no association.
LONE = "radia.lovelace10@stark10.example.com"
LEAVING = "sophie.hamilton13@pied1.example.com"  # cancels her Stripe subscription: Pied Piper is left with linus's
MIDDAY = datetime.fromisoformat(f"{PARTITIONS[-1]}T12:00:00+00:00")  # the world's last day


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")
    monkeypatch.setenv("HUBSPOT_REQUESTS_PER_SECOND", "100")


def extract_and_build(settings) -> None:
    for system, stream in STREAMS:
        materialize_all_partitions(settings, system, stream)
    build(settings)


def company(url: str, company_id: str) -> tuple:
    """What a sales rep sees on the company: its name and the three summary properties."""
    found = hubspot_get(url, f"/crm/v3/objects/companies/{company_id}", properties=",".join(("name", *PROPERTIES)))
    return tuple(found["properties"].get(p) for p in ("name", *PROPERTIES))


def company_ids(url: str) -> list[str]:
    return [c["id"] for c in hubspot_get(url, "/crm/v3/objects/companies", limit="100")["results"]]


def create_contact(url: str, properties: dict[str, str]) -> str:
    """A contact created as a person (or a form tool) does through HubSpot's API, associated with nothing."""
    answer = httpx.post(f"{url}/crm/v3/objects/contacts", json={"properties": properties}, timeout=30,
                        headers={"Authorization": f"Bearer {HUBSPOT_TOKEN}"})
    answer.raise_for_status()
    return answer.json()["id"]


def stripe_customer_id(sandbox, email: str) -> str:
    return next(c["id"] for c in sandbox.emulator("stripe").dump("customers") if c["email"] == email)


def test_each_company_shows_the_best_of_its_peoples_subscriptions_and_follows_their_changes(
        settings, sandbox, sandbox_server):
    url = sandbox_server.url
    payments = stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": url}, max_network_retries=0)
    emulator = sandbox.emulator("stripe")
    # a customer HubSpot does not know gets a contact without a company association, and subscribes at Stripe
    lone = create_contact(url, {"email": LONE, "firstname": "Radia", "lastname": "Lovelace", "company": "Stark Inc"})
    assert "associations" not in hubspot_get(url, f"/crm/v3/objects/contacts/{lone}", associations="companies")
    emulator.set_clock(MIDDAY.timestamp())
    prices = {p.lookup_key: p.id for p in payments.v1.prices.list(params={"limit": 100}).auto_paging_iter()}
    payments.v1.subscriptions.create(params={"customer": stripe_customer_id(sandbox, LONE),
                                             "items": [{"price": prices["basic-monthly-usd"]}]})
    emulator.set_clock(datetime.now(UTC).timestamp())

    extract_and_build(settings)
    companies_before = company_ids(url)
    first = sync(settings, NAME)
    assert (first.updated, first.failed) == (len(WORLD), 0)
    assert company_ids(url) == companies_before, "the sync never creates or removes a company"
    for company_id, expected in WORLD.items():
        assert company(url, company_id) == expected, company_id
    for company_id, name in UNTOUCHED.items():
        assert company(url, company_id) == (name, None, None, None), name
    # the lone subscriber is resolved all the way to her contact (the contact sync writes it), and still no company
    contacts = sync(settings, "subscription_status_to_hubspot")
    assert contacts.failed == 0
    shown = hubspot_get(url, f"/crm/v3/objects/contacts/{lone}", properties="subscription_status,subscription_plan")
    assert shown["properties"] == {"subscription_status": "active", "subscription_plan": "Basic monthly"}
    sandbox.state.clear_requests()
    assert sync(settings, NAME).updated == 0 and posts_to(sandbox, "hubspot") == []
    assert company(url, STARK) == ("Stark Inc", None, None, None)

    # Sophie cancels her Stripe subscription: Pied Piper is left with Linus's, whose renewal failed
    leaving = payments.v1.subscriptions.list(params={"customer": stripe_customer_id(sandbox, LEAVING)}).data
    assert [s.status for s in leaving] == ["active"]
    payments.v1.subscriptions.cancel(leaving[0].id)
    extract_and_build(settings)
    second = sync(settings, NAME)
    assert (second.updated, second.failed) == (1, 0)
    assert company(url, PIED_PIPER) == ("Pied Piper Ltd", "past_due", "1", "2026-04-09")
    for company_id, expected in WORLD.items():
        if company_id != PIED_PIPER:
            assert company(url, company_id) == expected, company_id

    # nothing changed: a new read and run send nothing
    extract_and_build(settings)
    sandbox.state.clear_requests()
    third = sync(settings, NAME)
    assert third.plan.counts()["updates"] == 0 and posts_to(sandbox, "hubspot") == []


def test_hubspot_lists_a_contacts_primary_company_twice_and_refuses_what_the_company_does_not_define(sandbox_server):
    """HubSpot's v3 read of Pied Piper's Linus Ritchie (the world's person 37) with `associations=companies`, and
    `batch/update` of companies refusing an unknown property and a value outside the enumeration's options."""
    url = sandbox_server.url
    contacts = hubspot_get(url, "/crm/v3/objects/contacts", limit="100", associations="companies",
                           properties="email")["results"]
    linus = next(c for c in contacts if c["properties"]["email"] == "linus.ritchie37@pied1.example.com")
    assert linus["associations"]["companies"]["results"] == [
        {"id": PIED_PIPER, "type": "contact_to_company"}, {"id": PIED_PIPER, "type": "contact_to_company_unlabeled"}]
    headers = {"Authorization": f"Bearer {HUBSPOT_TOKEN}"}
    for properties, code in (({"subscription_status": "paused"}, "INVALID_OPTION"),
                             ({"seats": "3"}, "PROPERTY_DOESNT_EXIST")):
        answer = httpx.post(f"{url}/crm/v3/objects/companies/batch/update", headers=headers, timeout=30,
                            json={"inputs": [{"id": PIED_PIPER, "properties": properties}]})
        assert answer.status_code == 400 and [e["code"] for e in answer.json()["errors"]] == [code], answer.text


def test_contact_and_company_notices_reread_the_associations_unless_only_a_property_changed():
    def streams(kind: str) -> set[str]:
        return {stream for _, stream in streams_for_notice("hubspot", {"subscriptionType": kind})}

    assert streams("contact.associationChange") == {"contacts", "contact_companies"}
    assert streams("contact.creation") == {"contacts", "contact_companies"}
    assert streams("contact.merge") == {"contacts", "contact_companies", "archived_contacts"}
    assert streams("company.deletion") == {"companies", "contact_companies"}
    assert streams("contact.propertyChange") == {"contacts"}
    assert streams("company.propertyChange") == {"companies"}
