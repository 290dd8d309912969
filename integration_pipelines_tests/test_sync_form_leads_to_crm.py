"""Scenario 1: web-form submissions (landed by the webhook receiver) → HubSpot and Salesforce contacts, one per
normalized email, through the real ingest path and real HTTP against the sandbox."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

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


def submission(n: int, email: str, first: str | None, last: str | None, minutes: int = 0) -> dict:
    return {"submission_id": f"sub_{n}", "email": email, "firstname": first, "lastname": last,
            "company": "Example Co", "source": "website contact form",
            "submitted_at": (ANCHOR + timedelta(minutes=minutes)).isoformat()}


def existing_person(sandbox) -> str:
    """An email known to both CRMs (a customer filling in the form again)."""
    in_salesforce = {(c["Email"] or "").lower() for c in sandbox.emulator("salesforce").dump("contacts")}
    return next(c["properties"]["email"] for c in sandbox.emulator("hubspot").dump("contacts")
                if (c["properties"]["email"] or "").lower() in in_salesforce)


def prepare(settings, sandbox, *, invalid: bool = False) -> str:
    materialize_stream(settings, "salesforce", "contacts")  # the only table the syncs read besides the forms
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


def assert_crm_state(sandbox, known: str, hubspot_before: int, salesforce_before: int) -> None:
    hubspot, salesforce = hubspot_by_email(sandbox), salesforce_by_email(sandbox)
    for email, (first, last) in NEW.items():
        assert len(hubspot[email]) == 1, f"one HubSpot contact for {email}"
        props = hubspot[email][0]["properties"]
        assert (props["firstname"], props["lastname"], props["company"]) == (first, last, "Example Co")
        assert len(salesforce[email]) == 1, f"one Salesforce contact for {email}"
        sf = salesforce[email][0]
        assert (sf["FirstName"], sf["LastName"], sf["External_Id__c"], sf["LeadSource"]) == (first, last, email, "Web")
    # the known customer: updated in HubSpot (upsert by email), left alone in Salesforce; never a second record
    assert len(hubspot[known]) == 1 and hubspot[known][0]["properties"]["firstname"] == "Known"
    assert len(salesforce[known]) == 1 and salesforce[known][0]["External_Id__c"] is None
    assert sum(len(v) for v in hubspot.values()) == hubspot_before + len(NEW)
    assert sum(len(v) for v in salesforce.values()) == salesforce_before + len(NEW)


def counts(sandbox) -> tuple[int, int]:
    return len(sandbox.emulator("hubspot").dump("contacts")), len(sandbox.emulator("salesforce").dump("contacts"))


def test_form_leads_reach_both_crms_once_per_email_and_a_rerun_sends_nothing(settings, sandbox):
    known = prepare(settings, sandbox)
    before = counts(sandbox)
    sandbox.state.clear_requests()
    for name in SYNCS.values():
        plan = sync(settings, name, dry_run=True)
        assert plan.plan.counts()["creates"] == (5 if name == "form_leads_to_hubspot" else 4)
    assert posts_to(sandbox, "hubspot") == [] and posts_to(sandbox, "salesforce") == []
    assert sandbox.state.request_log("hubspot") == [] and sandbox.state.request_log("salesforce") == []

    hubspot, salesforce = sync(settings, SYNCS["hubspot"]), sync(settings, SYNCS["salesforce"])
    assert (hubspot.created, hubspot.failed, salesforce.created, salesforce.failed) == (5, 0, 4, 0)
    assert_crm_state(sandbox, known, *before)

    sandbox.state.clear_requests()
    for name in SYNCS.values():
        assert sync(settings, name).plan.counts()["creates"] == 0
    assert posts_to(sandbox, "hubspot") == [] and posts_to(sandbox, "salesforce") == []

    # the same person submits again with a new last name: one update each, still one contact each
    land_forms(settings, [submission(8, "BOB.NEW@example.test", None, "Newer", 30)], batch="b2")
    hubspot, salesforce = sync(settings, SYNCS["hubspot"]), sync(settings, SYNCS["salesforce"])
    assert (hubspot.updated, hubspot.created, salesforce.updated, salesforce.created) == (1, 0, 1, 0)
    assert [c["properties"]["lastname"] for c in hubspot_by_email(sandbox)["bob.new@example.test"]] == ["Newer"]
    assert [c["LastName"] for c in salesforce_by_email(sandbox)["bob.new@example.test"]] == ["Newer"]


def test_one_invalid_submission_fails_alone_in_both_crms(settings, sandbox):
    known = prepare(settings, sandbox, invalid=True)
    before = counts(sandbox)
    hubspot, salesforce = sync(settings, SYNCS["hubspot"]), sync(settings, SYNCS["salesforce"])
    assert (hubspot.created, hubspot.failed, salesforce.created, salesforce.failed) == (5, 1, 4, 1)
    assert_crm_state(sandbox, known, *before)
    errors = warehouse_rows(settings, "SELECT sync_name, record_key, operation, message FROM sync.errors ORDER BY 1")
    assert [(e[0], e[1], e[2]) for e in errors] == [
        ("form_leads_to_hubspot", "not-an-email", "create"), ("form_leads_to_salesforce", "not-an-email", "create")]
    assert "INVALID_EMAIL" in errors[0][3]
    status = warehouse_rows(settings, "SELECT DISTINCT status FROM sync.ledger WHERE record_key = 'not-an-email'")
    assert status == [("failed",)]


def test_twenty_percent_faults_end_in_the_same_state_without_duplicates(settings, sandbox, monkeypatch):
    known = prepare(settings, sandbox)
    before = counts(sandbox)
    sandbox.state.clear_requests()
    for system, seed in (("hubspot", 31), ("salesforce", 4)):  # seeds whose first write is faulted
        monkeypatch.setenv(f"{system.upper()}_MAX_RETRIES", "12")
        sandbox.set_faults(system, error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                           methods=["POST", "PUT", "PATCH"], seed=seed)
    results = [sync(settings, name) for name in SYNCS.values()]
    fired = {r["system"] for r in sandbox.state.request_log() if r["fault"]}
    sandbox.clear_faults()
    assert fired == {"hubspot", "salesforce"}, "each seed must fire at least one fault on a write"
    assert [(r.created, r.failed) for r in results] == [(5, 0), (4, 0)]
    assert_crm_state(sandbox, known, *before)
