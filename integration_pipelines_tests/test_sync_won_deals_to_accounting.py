"""Scenario 4: closed-won Salesforce opportunities → customers, then invoices, in the issuing entity's books.

Each deal is routed by its customer's country (core.deals.legal_entity / books_system): US → QuickBooks,
GB/DE → Xero. Each test drives one books system and checks it invoices exactly its entities' deals, no other."""

from __future__ import annotations

from datetime import timedelta

import pytest

from integration_pipelines.sandbox.salesforce import sf_id

from .conftest import ANCHOR, materialize_all_partitions, warehouse_rows
from .test_core_models import build
from .test_syncs import posts_to, sync


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")


#: a country of an entity each books system keeps (the shipped legal-entities file), and that entity's currency
COUNTRY = {"quickbooks": ("US", "USD"), "xero": ("GB", "GBP")}
BOOKS_COUNTRIES = {"quickbooks": {"US"}, "xero": {"GB", "DE"}}

TARGETS = {
    "quickbooks": ("won_deal_customers_to_quickbooks", "won_deals_to_quickbooks_invoices"),
    "xero": ("won_deal_customers_to_xero", "won_deals_to_xero_invoices"),
}


def _customers(sandbox, system: str) -> list[dict]:
    return sandbox.emulator(system).dump("customers" if system == "quickbooks" else "contacts")


def _name(system: str, customer: dict) -> str:
    return customer["DisplayName"] if system == "quickbooks" else customer["Name"]


def _customer_id(system: str, customer: dict) -> str:
    return customer["Id"] if system == "quickbooks" else customer["ContactID"]


def _email(system: str, customer: dict) -> str:
    found = (customer.get("PrimaryEmailAddr") or {}).get("Address") if system == "quickbooks" \
        else customer.get("EmailAddress")
    return (found or "").lower()


def _invoices_for(sandbox, system: str, deal_id: str) -> list[dict]:
    if system == "quickbooks":
        return [i for i in sandbox.emulator("quickbooks").dump("invoices")
                if i.get("PrivateNote") == f"salesforce opportunity {deal_id}"]
    return [i for i in sandbox.emulator("xero").dump("invoices")
            if i.get("Reference") == f"salesforce opportunity {deal_id}"]


def _plant_won_deal(sandbox, n: int, contact: dict, amount: float | None, currency: str = "USD") -> str:
    sf = sandbox.emulator("salesforce")
    template = next(r for r in sf.records["Opportunity"].values() if r.get("IsWon"))
    opportunity_id = sf_id("006", "won-deal-test", n)
    record = sf._blank("Opportunity", opportunity_id)
    record.update(AccountId=contact.get("AccountId"), ContactId=contact["Id"], Name=f"Test deal {n}",
                  StageName=template["StageName"], CloseDate="2026-03-09", Amount=amount, CurrencyIsoCode=currency,
                  Type="New Customer", LeadSource="Web")
    moment = ANCHOR - timedelta(hours=6, minutes=n)
    sf._put("Opportunity", record, moment, moment)
    return opportunity_id


def extract_streams(settings, system: str, *, crm: bool = True) -> None:
    """Only what the syncs read (the CRM's contacts and opportunities, the books' customers): keeps tests fast."""
    streams = [("salesforce", "contacts"), ("salesforce", "opportunities")] if crm else []
    for name, stream in [*streams, (system, "customers" if system == "quickbooks" else "contacts")]:
        materialize_all_partitions(settings, name, stream)


def _plant_contact(sandbox, n: int, country: str = "US") -> dict:
    """A buyer who exists only in the CRM (every seeded contact is already in the books), in `country`."""
    sf = sandbox.emulator("salesforce")
    account = next(iter(sf.records["Account"].values()))
    record = sf._blank("Contact", sf_id("003", "won-deal-test", n))
    record.update(AccountId=account["Id"], FirstName="Wanda", LastName=f"Newbuyer{n}",
                  Email=f"wanda.newbuyer{n}@freshco{n}.example.com", Phone=f"+1555000{n:04d}",
                  MailingCountry=country)
    moment = ANCHOR - timedelta(hours=7, minutes=n)
    sf._put("Contact", record, moment, moment)
    return record


def prepare(settings, sandbox, system: str, *, new_customers: int = 2, invalid: bool = False) -> dict:
    """Plant won opportunities for new CRM-only contacts (and for existing ones), then extract and build."""
    country, currency = COUNTRY[system]
    contacts = [_plant_contact(sandbox, n, country) for n in range(new_customers)]
    planted = {"new": [_plant_won_deal(sandbox, n, c, 1000.0 + n, currency) for n, c in enumerate(contacts)]}
    if invalid:  # a won deal without an amount: the accounting system refuses the invoice line
        emails = {_email(system, c) for c in _customers(sandbox, system)}
        insider = next(c for c in sandbox.emulator("salesforce").records["Contact"].values()
                       if c.get("Email") and c["Email"].lower() in emails and c.get("MailingCountry") == country)
        planted["invalid"] = _plant_won_deal(sandbox, 99, insider, None, currency)
    extract_streams(settings, system)
    build(settings)
    return planted


def won_deals(settings, system: str) -> list[tuple]:
    """The won deals this books system invoices: those of the entities it keeps."""
    return warehouse_rows(settings, "SELECT source_id, golden_customer_id, amount_minor FROM core.deals "
                                    "WHERE is_won AND golden_customer_id IS NOT NULL AND amount_minor IS NOT NULL "
                                    "AND books_system = ?", [system])


def other_won_deals(settings, system: str) -> list[str]:
    return [r[0] for r in warehouse_rows(settings, "SELECT source_id FROM core.deals WHERE is_won AND "
                                                   "golden_customer_id IS NOT NULL AND books_system <> ?", [system])]


def expected_customer(settings, system: str, golden_id: str) -> str:
    customer_sync = TARGETS[system][0]
    rows = warehouse_rows(settings, "SELECT min(source_id) FROM core.customer_xref WHERE golden_id = ? AND "
                                    "source_system = ?", [golden_id, system])
    if rows[0][0]:
        return rows[0][0]
    return warehouse_rows(settings, "SELECT external_id FROM sync.ledger WHERE sync_name = ? AND record_key = ?",
                          [customer_sync, golden_id])[0][0]


def assert_books(settings, sandbox, system: str, planted: dict) -> None:
    deals = won_deals(settings, system)
    assert len(deals) >= 1 + len(planted["new"])
    others = other_won_deals(settings, system)
    assert others, "the world has won deals of the other books' entities too"
    for deal_id in others:  # another entity's deal: never invoiced in these books
        assert _invoices_for(sandbox, system, deal_id) == []
    routed = dict(warehouse_rows(settings, "SELECT d.source_id, c.country FROM core.deals AS d JOIN core.customers "
                                           "AS c ON c.golden_id = d.golden_customer_id WHERE d.books_system = ?",
                                 [system]))
    assert {routed[d] for d, _, _ in deals} <= BOOKS_COUNTRIES[system]
    for deal_id, golden_id, amount_minor in deals:
        invoices = _invoices_for(sandbox, system, deal_id)
        assert len(invoices) == 1, f"deal {deal_id}: {len(invoices)} invoices"
        invoice = invoices[0]
        if system == "quickbooks":
            assert invoice["CustomerRef"]["value"] == expected_customer(settings, system, golden_id)
            assert round(invoice["TotalAmt"] * 100) == amount_minor
            if deal_id in planted["new"]:
                assert (invoice["TxnDate"], invoice["DueDate"]) == ("2026-03-09", "2026-04-08")
        else:
            assert invoice["Contact"]["ContactID"] == expected_customer(settings, system, golden_id)
            assert round(invoice["Total"] * 100) == amount_minor and invoice["Status"] == "DRAFT"
    # each CRM-only customer now exists exactly once in the books, under its golden name
    for deal_id in planted["new"]:
        golden_id = next(g for d, g, _ in deals if d == deal_id)
        name = warehouse_rows(settings, "SELECT full_name FROM core.customers WHERE golden_id = ?", [golden_id])[0][0]
        matches = [c for c in _customers(sandbox, system) if _name(system, c) == name]
        assert len(matches) == 1
        assert _customer_id(system, matches[0]) == expected_customer(settings, system, golden_id)


@pytest.fixture(autouse=True)
def _fast_targets(settings, monkeypatch):
    """The emulators need no protection from us: drop the client-side rate limits (Xero's is 1 request/s)."""
    for prefix in ("QUICKBOOKS", "XERO", "SALESFORCE"):
        monkeypatch.setenv(f"{prefix}_REQUESTS_PER_SECOND", "100")


@pytest.mark.parametrize("system", ["quickbooks", "xero"])
def test_won_deals_create_customers_then_invoices_once(settings, sandbox, system):
    customer_sync, invoice_sync = TARGETS[system]
    planted = prepare(settings, sandbox, system)

    sandbox.state.clear_requests()
    dry = sync(settings, invoice_sync, dry_run=True)
    assert dry.plan.counts()["waiting"] == len(planted["new"])  # their customers do not exist yet
    assert sync(settings, customer_sync, dry_run=True).plan.counts()["creates"] == len(planted["new"])
    assert sandbox.state.request_log(system) == []

    customers = sync(settings, customer_sync)
    assert (customers.created, customers.failed) == (len(planted["new"]), 0)
    invoices = sync(settings, invoice_sync)
    assert invoices.failed == 0 and invoices.created == len(won_deals(settings, system))
    assert_books(settings, sandbox, system, planted)

    sandbox.state.clear_requests()
    assert sync(settings, customer_sync).plan.counts()["creates"] == 0
    assert sync(settings, invoice_sync).plan.counts()["creates"] == 0
    assert posts_to(sandbox, system) == []
    # once the books are re-read the new customers are in core.customer_xref: still nothing to send
    extract_streams(settings, system, crm=False)
    build(settings)
    sandbox.state.clear_requests()
    assert sync(settings, invoice_sync).plan.counts() == {
        "creates": 0, "updates": 0, "deletes": 0, "unchanged": len(won_deals(settings, system)), "waiting": 0}
    assert posts_to(sandbox, system) == []


@pytest.mark.parametrize(("system", "seed"), [("quickbooks", 3), ("xero", 3)])
def test_faults_and_an_invalid_deal_end_in_the_same_books(settings, sandbox, monkeypatch, system, seed):
    customer_sync, invoice_sync = TARGETS[system]
    planted = prepare(settings, sandbox, system, invalid=True)
    prefix = system.upper()
    monkeypatch.setenv(f"{prefix}_MAX_RETRIES", "12")
    sandbox.set_faults(system, error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                       methods=["POST", "PUT", "PATCH"], seed=seed)
    customers = sync(settings, customer_sync)
    invoices = sync(settings, invoice_sync)
    sandbox.clear_faults()
    assert any(r["fault"] for r in sandbox.state.request_log(system)), "pick a seed whose faults fire"
    assert (customers.created, customers.failed) == (len(planted["new"]), 0)
    assert (invoices.created, invoices.failed) == (len(won_deals(settings, system)), 1)
    assert_books(settings, sandbox, system, planted)  # exactly one invoice per deal: retries were replays
    assert _invoices_for(sandbox, system, planted["invalid"]) == []
    errors = warehouse_rows(settings, "SELECT record_key, operation, message FROM sync.errors WHERE sync_name = ?",
                            [invoice_sync])
    assert [(k, op) for k, op, _ in errors] == [(f"salesforce:{planted['invalid']}", "create")]
    assert ("Amount" in errors[0][2]) if system == "quickbooks" else ("Unit Amount" in errors[0][2])
