"""Scenario 1: web-form submissions (landed by the webhook receiver) → HubSpot and Salesforce contacts, one per
normalized email, through the real ingest path and real HTTP against the sandbox. A form post creates a contact or
fills its empty fields, never overwrites what the CRM holds."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest

from integration_pipelines.sandbox.hubspot import SANDBOX_TOKEN as HUBSPOT_TOKEN
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.webhooks.ingest import ingest_batch
from integration_pipelines.webhooks.landing import LocalLandingStore
from integration_pipelines.webhooks.receiver import envelope

from .conftest import ANCHOR, materialize_stream, warehouse_rows
from .test_syncs import posts_to, sync


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")


SYNCS = {"hubspot": "form_leads_to_hubspot", "salesforce": "form_leads_to_salesforce"}
NEW = {  # normalized email → (first, last) expected after dedupe (the latest non-empty value wins)
    "ada.newlead@example.test": ("Ada", "Newlead-Smith"),
    "bob.new@example.test": ("Bob", "New"),
    "carol.new@example.test": ("Carol", "New"),
    "dave.new@example.test": ("Dave", "New"),
}


def land_forms(settings, submissions: list[dict], batch: str = "b1") -> None:
    """Land submissions as the receiver does (one file per submission id) and run the ingest on them."""
    store = LocalLandingStore(settings.data_dir / "webhooks")
    for n, form in enumerate(submissions):
        received = ANCHOR + timedelta(minutes=n)
        body = json.dumps(form).encode()
        store.land("forms", received.strftime("%Y-%m-%d"), form["submission_id"],
                   envelope("forms", form["submission_id"], "form.submitted", received,
                            {"content-type": "application/json"}, body))
    store.claim(batch, 1000)
    result = ingest_batch(store, Warehouse(settings.warehouse_database), settings.spool_dir, batch, f"ingest-{batch}")
    assert not result.failed


def submission(n: int, email: str, first: str | None, last: str | None, minutes: int = 0,
               company: str = "Example Co", phone: str | None = None) -> dict:
    return {"submission_id": f"sub_{n}", "email": email, "firstname": first, "lastname": last,
            "company": company, "phone": phone, "source": "website contact form",
            "submitted_at": (ANCHOR + timedelta(minutes=minutes)).isoformat()}


def existing_person(sandbox) -> str:
    """An email known to both CRMs (a customer filling in the form again)."""
    in_salesforce = {(c["Email"] or "").lower() for c in sandbox.emulator("salesforce").dump("contacts")}
    return next(c["properties"]["email"] for c in sandbox.emulator("hubspot").dump("contacts")
                if (c["properties"]["email"] or "").lower() in in_salesforce)


def read_crms(settings) -> None:
    """The warehouse's copy of who is in each CRM: the syncs read it to tell new people from known ones."""
    materialize_stream(settings, "hubspot", "contacts")
    materialize_stream(settings, "salesforce", "contacts")


def prepare(settings, sandbox, *, invalid: bool = False) -> str:
    read_crms(settings)  # the only tables the syncs read besides the forms
    known = existing_person(sandbox)
    forms = [submission(1, "  Ada.Newlead@Example.TEST ", "Ada", "Newlead", 1),
             submission(2, "ada.newlead@example.test", None, "Newlead-Smith", 5),  # same person, later
             submission(3, "bob.new@example.test", "Bob", "New", 2),
             submission(4, f"  {known.upper()}", "Known", "Customer", 3),
             submission(5, "carol.new@example.test", "Carol", "New", 4),
             submission(6, "Dave.New@example.test", "Dave", "New", 6)]
    if invalid:
        forms.append(submission(7, "not-an-email", "No", None, 7))  # bad address, no last name
    land_forms(settings, forms)
    return known.strip().lower()


def hubspot_by_email(sandbox) -> dict[str, list[dict]]:
    contacts: dict[str, list[dict]] = {}
    for c in sandbox.emulator("hubspot").dump("contacts"):
        contacts.setdefault((c["properties"]["email"] or "").lower(), []).append(c)
    return contacts


def salesforce_by_email(sandbox) -> dict[str, list[dict]]:
    contacts: dict[str, list[dict]] = {}
    for c in sandbox.emulator("salesforce").dump("contacts"):
        contacts.setdefault((c["Email"] or "").lower(), []).append(c)
    return contacts


def assert_crm_state(sandbox, known: str, hubspot_before: int, salesforce_before: int, known_first: str) -> None:
    hubspot, salesforce = hubspot_by_email(sandbox), salesforce_by_email(sandbox)
    for email, (first, last) in NEW.items():
        assert len(hubspot[email]) == 1, f"one HubSpot contact for {email}"
        props = hubspot[email][0]["properties"]
        assert (props["firstname"], props["lastname"], props["company"]) == (first, last, "Example Co")
        assert len(salesforce[email]) == 1, f"one Salesforce contact for {email}"
        sf = salesforce[email][0]
        assert (sf["FirstName"], sf["LastName"], sf["External_Id__c"], sf["LeadSource"]) == (first, last, email, "Web")
    # the known customer: its filled fields kept in HubSpot, left alone in Salesforce; never a second record
    assert len(hubspot[known]) == 1 and hubspot[known][0]["properties"]["firstname"] == known_first
    assert known_first != "Known"
    assert len(salesforce[known]) == 1 and salesforce[known][0]["External_Id__c"] is None
    assert sum(len(v) for v in hubspot.values()) == hubspot_before + len(NEW)
    assert sum(len(v) for v in salesforce.values()) == salesforce_before + len(NEW)


def counts(sandbox) -> tuple[int, int]:
    return len(sandbox.emulator("hubspot").dump("contacts")), len(sandbox.emulator("salesforce").dump("contacts"))


def first_name_in_hubspot(sandbox, email: str) -> str:
    return hubspot_by_email(sandbox)[email][0]["properties"]["firstname"]


def test_form_leads_reach_both_crms_once_per_email_and_a_rerun_sends_nothing(settings, sandbox):
    known = prepare(settings, sandbox)
    before, known_first = counts(sandbox), first_name_in_hubspot(sandbox, known)
    sandbox.state.clear_requests()
    for name in SYNCS.values():
        plan = sync(settings, name, dry_run=True)
        assert plan.plan.counts()["creates"] == 4  # the known customer has nothing empty to fill: not sent
    assert posts_to(sandbox, "hubspot") == [] and posts_to(sandbox, "salesforce") == []
    assert sandbox.state.request_log("hubspot") == [] and sandbox.state.request_log("salesforce") == []

    hubspot, salesforce = sync(settings, SYNCS["hubspot"]), sync(settings, SYNCS["salesforce"])
    assert (hubspot.created, hubspot.failed, salesforce.created, salesforce.failed) == (4, 0, 4, 0)
    assert_crm_state(sandbox, known, *before, known_first)

    sandbox.state.clear_requests()
    for name in SYNCS.values():
        assert sync(settings, name).plan.counts()["creates"] == 0
    assert posts_to(sandbox, "hubspot") == [] and posts_to(sandbox, "salesforce") == []

    # the same person submits again with a new last name and a phone. Before the CRMs are read again their
    # values are not known here, so nothing is sent; after, the last name they hold stays and the phone fills in.
    land_forms(settings, [submission(8, "BOB.NEW@example.test", None, "Newer", 30, phone="+1 555 0142")], batch="b2")
    for name in SYNCS.values():
        result = sync(settings, name)
        assert (result.created, result.updated) == (0, 0)
    read_crms(settings)
    hubspot, salesforce = sync(settings, SYNCS["hubspot"]), sync(settings, SYNCS["salesforce"])
    assert (hubspot.updated, hubspot.created, salesforce.updated, salesforce.created) == (1, 0, 1, 0)
    bob_hubspot = [c["properties"] for c in hubspot_by_email(sandbox)["bob.new@example.test"]]
    assert [(p["lastname"], p["phone"]) for p in bob_hubspot] == [("New", "+1 555 0142")]
    bob_salesforce = salesforce_by_email(sandbox)["bob.new@example.test"]
    assert [(c["LastName"], c["Phone"], c["LeadSource"]) for c in bob_salesforce] == [("New", "+1 555 0142", "Web")]
    read_crms(settings)  # now nothing is left to fill: a rerun sends nothing
    sandbox.state.clear_requests()
    for name in SYNCS.values():
        planned = sync(settings, name).plan.counts()
        assert (planned["creates"], planned["updates"]) == (0, 0)
    assert posts_to(sandbox, "hubspot") == [] and posts_to(sandbox, "salesforce") == []


def test_one_invalid_submission_fails_alone_in_both_crms(settings, sandbox):
    known = prepare(settings, sandbox, invalid=True)
    before, known_first = counts(sandbox), first_name_in_hubspot(sandbox, known)
    hubspot, salesforce = sync(settings, SYNCS["hubspot"]), sync(settings, SYNCS["salesforce"])
    assert (hubspot.created, hubspot.failed, salesforce.created, salesforce.failed) == (4, 1, 4, 1)
    assert_crm_state(sandbox, known, *before, known_first)
    errors = warehouse_rows(settings, "SELECT sync_name, record_key, operation, message FROM sync.errors ORDER BY 1")
    assert [(e[0], e[1], e[2]) for e in errors] == [
        ("form_leads_to_hubspot", "not-an-email", "create"), ("form_leads_to_salesforce", "not-an-email", "create")]
    assert "INVALID_EMAIL" in errors[0][3]
    status = warehouse_rows(settings, "SELECT DISTINCT status FROM sync.ledger WHERE record_key = 'not-an-email'")
    assert status == [("failed",)]


def test_twenty_percent_faults_end_in_the_same_state_without_duplicates(settings, sandbox, monkeypatch):
    known = prepare(settings, sandbox)
    before, known_first = counts(sandbox), first_name_in_hubspot(sandbox, known)
    sandbox.state.clear_requests()
    for system, seed in (("hubspot", 31), ("salesforce", 4)):  # seeds whose first write is faulted
        monkeypatch.setenv(f"{system.upper()}_MAX_RETRIES", "12")
        sandbox.set_faults(system, error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                           methods=["POST", "PUT", "PATCH"], seed=seed)
    results = [sync(settings, name) for name in SYNCS.values()]
    fired = {r["system"] for r in sandbox.state.request_log() if r["fault"]}
    sandbox.clear_faults()
    assert fired == {"hubspot", "salesforce"}, "each seed must fire at least one fault on a write"
    assert [(r.created, r.failed) for r in results] == [(4, 0), (4, 0)]
    assert_crm_state(sandbox, known, *before, known_first)


def hubspot_contact(sandbox_url: str, email: str) -> dict:
    """One contact as HubSpot's own API answers it (GET by email)."""
    answer = httpx.get(f"{sandbox_url}/crm/v3/objects/contacts/{email}", headers={
        "Authorization": f"Bearer {HUBSPOT_TOKEN}"}, params={
        "idProperty": "email", "properties": "email,firstname,lastname,company,phone"})
    assert answer.status_code == 200, answer.text
    return {k: answer.json()["properties"].get(k) for k in ("email", "firstname", "lastname", "company", "phone")}


def test_a_form_post_never_overwrites_a_known_customer_and_only_fills_empty_fields(settings, sandbox,
                                                                                  sandbox_server):
    """A customer HubSpot holds with a company and no phone posts the form (or someone forges it) with another
    name, another company and a phone: the name and company stay, the phone fills in. A new person is created
    with every field. Read back through HubSpot's API; the expected values are written out by hand."""
    created = httpx.post(f"{sandbox_server.url}/crm/v3/objects/contacts",
                         headers={"Authorization": f"Bearer {HUBSPOT_TOKEN}"},
                         json={"properties": {"email": "Grace.Known@Example.test", "firstname": "Grace",
                                              "lastname": "Hopper", "company": "Known Customer Ltd"}})
    assert created.status_code == 201, created.text
    read_crms(settings)
    land_forms(settings, [
        submission(1, "  Grace.Known@Example.TEST", "Forged", "Name", 1, company="Forged Inc", phone="+1 555 0100"),
        submission(2, "heidi.new@example.test", "Heidi", "New", 2, company="New Lead GmbH", phone="+49 30 1234"),
    ])
    result = sync(settings, SYNCS["hubspot"])
    assert (result.created, result.updated, result.failed) == (2, 0, 0)  # "created": upserted by email
    assert hubspot_contact(sandbox_server.url, "grace.known@example.test") == {  # its e-mail's case too
        "email": "Grace.Known@Example.test", "firstname": "Grace", "lastname": "Hopper",
        "company": "Known Customer Ltd", "phone": "+1 555 0100"}
    assert hubspot_contact(sandbox_server.url, "heidi.new@example.test") == {
        "email": "heidi.new@example.test", "firstname": "Heidi", "lastname": "New", "company": "New Lead GmbH",
        "phone": "+49 30 1234"}

    # another post for both, after the CRM was read again: every field is filled now, so nothing changes
    read_crms(settings)
    land_forms(settings, [
        submission(3, "grace.known@example.test", "Again", None, 10, company="Other Inc", phone="+1 555 0199"),
        submission(4, "heidi.new@example.test", None, "Renamed", 11, company="Other GmbH", phone="+49 30 9999"),
    ], batch="b2")
    sandbox.state.clear_requests()
    result = sync(settings, SYNCS["hubspot"])
    assert (result.created, result.updated, result.failed) == (0, 0, 0)
    assert posts_to(sandbox, "hubspot") == []
    assert hubspot_contact(sandbox_server.url, "grace.known@example.test")["phone"] == "+1 555 0100"
    assert hubspot_contact(sandbox_server.url, "heidi.new@example.test")["lastname"] == "New"
