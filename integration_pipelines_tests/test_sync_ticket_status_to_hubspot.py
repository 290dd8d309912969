"""Scenario 3: Salesforce cases → `open_tickets` and `support_status` on the customer's HubSpot contact(s),
updated by HubSpot id (never created), over real HTTP against the sandbox.

The acceptance test's expected values are written by hand from the sandbox world (seed 7, anchored 2026-03-10) as
Salesforce's support desk records it:
- alan.johnson32@tyrell8.example.com: case 00001027 New and 00001028 (500Hs00000KdXdeIAF) Escalated → 2 open,
  escalated;
- grace.knuth11@aperture11.example.com: 00001005 Closed → 0 open, resolved;
- tim.turing26@initech2.example.com: 00001020 Closed, 00001019 New → 1 open, open;
- linus.wilson4@globex4.example.com: 00001001 Escalated, 00001002 New → 2 open, escalated; HubSpot also holds him
  as linus.wilson@personal.example.net (the same customer), which says the same;
- 21 HubSpot contacts belong to customers with cases."""

from __future__ import annotations

import pytest

from .conftest import materialize_all_partitions, warehouse_rows
from .target_api import hubspot_get, salesforce_update
from .test_core_models import build
from .test_syncs import posts_to, sync


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")


NAME = "ticket_status_to_hubspot"
STREAMS = (("salesforce", "accounts"), ("salesforce", "contacts"), ("salesforce", "cases"), ("hubspot", "contacts"))


def prepare(settings, sandbox, *, on_hold: bool = False) -> str | None:
    """Extract the CRM and the support desk, build core. `on_hold`: one case gets a status the mapping lacks."""
    changed = None
    if on_hold:
        salesforce = sandbox.emulator("salesforce")
        with sandbox.state.lock:
            case = next(c for c in salesforce.records["Case"].values() if expected_by_email(sandbox)
                        .get(contact_emails(sandbox).get(c["ContactId"], "")))
            case["Status"] = "On Hold"
            changed = contact_emails(sandbox)[case["ContactId"]]
    for system, stream in STREAMS:
        materialize_all_partitions(settings, system, stream)
    build(settings)
    return changed


def contact_emails(sandbox) -> dict[str, str]:
    return {c["Id"]: (c["Email"] or "").lower() for c in sandbox.emulator("salesforce").dump("contacts")}


def expected_by_email(sandbox) -> dict[str, tuple[str, str]]:
    """What each ticket-raising customer's HubSpot contact should say, from the support desk itself."""
    emails = contact_emails(sandbox)
    statuses: dict[str, list[str]] = {}
    for case in sandbox.emulator("salesforce").dump("cases"):
        if not case.get("IsDeleted") and case["ContactId"] in emails:
            statuses.setdefault(emails[case["ContactId"]], []).append(case["Status"])
    expected = {}
    for email, found in statuses.items():
        open_count = sum(s != "Closed" for s in found)
        unknown = sorted(s.lower().replace(" ", "_") for s in found if s not in ("New", "Working", "Escalated",
                                                                                    "Closed"))
        status = (unknown[0] if unknown else "escalated" if "Escalated" in found
                  else "open" if {"New", "Working"} & set(found) else "resolved")
        expected[email] = (str(open_count), status)
    return expected


def hubspot_contacts(sandbox) -> list[dict]:
    return sandbox.emulator("hubspot").dump("contacts")


def assert_hubspot_state(settings, sandbox, before: list[dict], skip: frozenset[str] = frozenset()) -> None:
    expected = expected_by_email(sandbox)
    after = hubspot_contacts(sandbox)
    assert [c["id"] for c in after] == [c["id"] for c in before], "the sync never creates or removes a contact"
    targeted = {r[0] for r in warehouse_rows(settings, f"SELECT hubspot_contact_id FROM ({_source()})")}
    matched = 0
    for contact in after:
        props = contact["properties"]
        email = (props["email"] or "").lower()
        if contact["id"] not in targeted or contact["id"] in skip:
            assert (props["open_tickets"], props["support_status"]) == (None, None), "untouched contact"
            continue
        if email in expected:
            assert (props["open_tickets"], props["support_status"]) == expected[email], email
            matched += 1
        else:  # a second HubSpot record of the same customer (identity resolution linked it): same values
            assert props["support_status"] in ("open", "escalated", "resolved")
    assert matched >= 10


def _source() -> str:
    from integration_pipelines.syncs.registry import get_sync
    return get_sync(NAME).source_sql


def test_ticket_status_reaches_hubspot_contacts_and_a_rerun_sends_nothing(settings, sandbox):
    before = hubspot_contacts(sandbox)
    prepare(settings, sandbox)
    sandbox.state.clear_requests()
    plan = sync(settings, NAME, dry_run=True)
    planned = plan.plan.counts()["updates"]
    assert planned >= 10 and plan.updated == 0 and sandbox.state.request_log("hubspot") == []

    result = sync(settings, NAME)
    assert (result.updated, result.created, result.failed) == (planned, 0, 0)
    assert_hubspot_state(settings, sandbox, before)
    sandbox.state.clear_requests()
    assert sync(settings, NAME).plan.counts()["updates"] == 0
    assert posts_to(sandbox, "hubspot") == []


def test_twenty_percent_faults_end_in_the_same_state_without_duplicates(settings, sandbox, monkeypatch):
    before = hubspot_contacts(sandbox)
    prepare(settings, sandbox)
    monkeypatch.setenv("HUBSPOT_MAX_RETRIES", "12")
    sandbox.state.clear_requests()
    sandbox.set_faults("hubspot", error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                       methods=["POST", "PUT", "PATCH"], seed=31)
    result = sync(settings, NAME)
    fired = [r for r in sandbox.state.request_log("hubspot") if r["fault"]]
    sandbox.clear_faults()
    assert fired, "the seed must fault at least one write"
    assert result.failed == 0 and result.updated > 0
    assert_hubspot_state(settings, sandbox, before)


def test_an_unmapped_case_status_is_refused_alone_and_lands_in_sync_errors(settings, sandbox):
    before = hubspot_contacts(sandbox)
    prepare(settings, sandbox, on_hold=True)
    # the customer's HubSpot contact(s): one, or two when HubSpot holds a duplicate of the person
    bad = {r[0] for r in warehouse_rows(settings, f"SELECT hubspot_contact_id FROM ({_source()}) "
                                                  "WHERE support_status = 'on_hold'")}
    assert 1 <= len(bad) <= 2
    result = sync(settings, NAME)
    assert result.failed == len(bad) and result.updated > 0
    errors = warehouse_rows(settings, "SELECT sync_name, record_key, operation, message FROM sync.errors")
    assert {e[1] for e in errors} == bad and {(e[0], e[2]) for e in errors} == {(NAME, "update")}
    assert all("INVALID_OPTION" in e[3] and "on_hold" in e[3] for e in errors)
    assert_hubspot_state(settings, sandbox, before, skip=frozenset(bad))


def _support(url: str, email: str) -> tuple[str | None, str | None]:
    props = hubspot_get(url, f"/crm/v3/objects/contacts/{email}", idProperty="email",
                        properties="open_tickets,support_status")["properties"]
    return props.get("open_tickets"), props.get("support_status")


def test_acceptance_hubspot_contacts_show_the_support_desk_and_follow_an_agents_change(settings, sandbox,
                                                                                        sandbox_server):
    """Read back through HubSpot's contacts API; the agent's change is made through Salesforce's REST API."""
    prepare(settings, sandbox)
    assert sync(settings, NAME).updated == 21
    url = sandbox_server.url
    assert _support(url, "alan.johnson32@tyrell8.example.com") == ("2", "escalated")
    assert _support(url, "grace.knuth11@aperture11.example.com") == ("0", "resolved")
    assert _support(url, "tim.turing26@initech2.example.com") == ("1", "open")
    assert _support(url, "linus.wilson4@globex4.example.com") == ("2", "escalated")
    assert _support(url, "linus.wilson@personal.example.net") == ("2", "escalated")

    # an agent closes the escalated case; the next read of the desk brings Alan's contact back to "open"
    salesforce_update(url, "Case", "500Hs00000KdXdeIAF", {"Status": "Closed"})
    materialize_all_partitions(settings, "salesforce", "cases")
    build(settings)
    result = sync(settings, NAME)
    assert (result.updated, result.created, result.failed) == (1, 0, 0)
    assert _support(url, "alan.johnson32@tyrell8.example.com") == ("1", "open")
    assert _support(url, "linus.wilson4@globex4.example.com") == ("2", "escalated")
