"""S4 acceptance: a won deal is invoiced once, in the books of the entity that issues it, read back through the
targets' own APIs (QuickBooks query API, Xero Invoices API on the sandbox's emulators).

Expected values are written by hand from the sandbox world (seed 7, anchored 2026-03-10) as its CRM records it:
- Salesforce opportunity 006Hs000000aE0qIAE "Tyrell Ltd - renewal", won, close date 2026-03-15, USD 3,840.00, contact
  ken.dijkstra20@tyrell8.example.com in the US → the US company (Acme Trading Inc) → QuickBooks;
- Salesforce opportunity 006Hs00000j4iITIAY "Hooli LLC - renewal", won, close date 2026-04-05, GBP 4,800.00, contact
  Barbara.Hamilton0@Hooli0.example.com in GB → the UK company (Acme Trading Ltd) → Xero.
The world's six won opportunities are five US deals and that one GB deal.

The world's HubSpot portal holds the same six won deals (the group ran both CRMs), each with its contact as an
association: "Tyrell Ltd - renewal" is HubSpot deal 79493089309 (contact 26844602209), created 62 ms before the
Salesforce opportunity; "Hooli LLC - renewal" is HubSpot deal 43619290257 (contact 77768738382, Barbara Hamilton in
GB), created 176 ms before its opportunity. They are the same sales and must not be invoiced again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from integration_pipelines.connectors.hubspot import SYSTEM as HUBSPOT
from integration_pipelines.connectors.quickbooks import SYSTEM as QBO
from integration_pipelines.connectors.xero import SYSTEM as XERO
from integration_pipelines.sandbox import quickbooks as qbo_sandbox
from integration_pipelines.sandbox import xero as xero_sandbox
from integration_pipelines.sandbox.salesforce import sf_id

from .conftest import ANCHOR, materialize_all_partitions, warehouse_rows
from .test_core_models import build
from .test_syncs import posts_to, sync

US_DEAL = "006Hs000000aE0qIAE"
UK_DEAL = "006Hs00000j4iITIAY"
US_DEAL_IN_HUBSPOT = "79493089309"
UK_DEAL_IN_HUBSPOT = "43619290257"
UK_CONTACT_IN_HUBSPOT = "77768738382"
WORLD_US_WON = 5
WORLD_UK_WON = 1
ORDER = ("won_deal_customers_to_quickbooks", "won_deals_to_quickbooks_invoices",
         "won_deal_customers_to_xero", "won_deals_to_xero_invoices")


@pytest.fixture(autouse=True)
def _fast_targets(settings, monkeypatch):
    for prefix in ("QUICKBOOKS", "XERO", "SALESFORCE"):
        monkeypatch.setenv(f"{prefix}_REQUESTS_PER_SECOND", "100")


def _token(url: str, system, token_path: str) -> str:
    response = httpx.post(url + token_path, auth=(system.values["client_id"].sandbox,
                                                  system.values["client_secret"].sandbox),
                          data={"grant_type": "refresh_token", "refresh_token": system.values["refresh_token"].sandbox})
    response.raise_for_status()
    return response.json()["access_token"]


def qbo_invoices(url: str, opportunity: str, crm: str = "salesforce") -> list[dict]:
    """QuickBooks invoices whose memo names the CRM's deal, through the query API."""
    realm = QBO.values["realm_id"].sandbox
    headers = {"Accept": "application/json", "Authorization": f"Bearer {_token(url, QBO, qbo_sandbox.TOKEN_PATH)}"}
    found, start = [], 1
    while True:
        body = httpx.get(f"{url}/v3/company/{realm}/query", headers=headers, params={
            "query": f"SELECT * FROM Invoice STARTPOSITION {start} MAXRESULTS 1000", "minorversion": "75"}).json()
        page = body["QueryResponse"].get("Invoice", [])
        found += page
        if len(page) < 1000:
            break
        start += 1000
    return [i for i in found if i.get("PrivateNote") == f"{crm} opportunity {opportunity}"]


def _xero_headers(url: str) -> dict[str, str]:
    return {"Accept": "application/json", "xero-tenant-id": XERO.values["tenant_id"].sandbox,
            "Authorization": f"Bearer {_token(url, XERO, xero_sandbox.TOKEN_PATH)}"}


def xero_invoices(url: str, opportunity: str, crm: str = "salesforce") -> list[dict]:
    """Xero invoices whose reference names the CRM's deal, through the Invoices API (`where` on Reference)."""
    response = httpx.get(f"{url}/api.xro/2.0/Invoices", headers=_xero_headers(url),
                         params={"where": f'Reference=="{crm} opportunity {opportunity}"'})
    response.raise_for_status()
    return response.json()["Invoices"]


def xero_invoice(url: str, invoice_id: str) -> dict:
    """One invoice in full (a list leaves out the line items, as Xero's does)."""
    response = httpx.get(f"{url}/api.xro/2.0/Invoices/{invoice_id}", headers=_xero_headers(url))
    response.raise_for_status()
    return response.json()["Invoices"][0]


def _plant_future_deal(sandbox, close_date: str) -> str:
    """A US customer's deal marked won while the CRM still holds the expected (future) close date."""
    sf = sandbox.emulator("salesforce")
    contact = next(c for c in sf.records["Contact"].values()
                   if (c.get("Email") or "").lower() == "ken.dijkstra20@tyrell8.example.com")
    opportunity = sf_id("006", "won-deal-routing", 1)
    record = sf._blank("Opportunity", opportunity)
    record.update(AccountId=contact.get("AccountId"), ContactId=contact["Id"], Name="Tyrell Ltd - early win",
                  StageName="Closed Won", CloseDate=close_date, Amount=1250.5, CurrencyIsoCode="USD")
    moment = ANCHOR - timedelta(hours=2)
    sf._put("Opportunity", record, moment, moment)
    return opportunity


def _extract_and_build(settings) -> None:
    for system, stream in (("salesforce", "contacts"), ("salesforce", "opportunities"),
                           ("quickbooks", "customers"), ("xero", "contacts")):
        materialize_all_partitions(settings, system, stream)
    build(settings)


def _run_all(settings) -> dict[str, tuple[int, int]]:
    results = {name: sync(settings, name) for name in ORDER}
    return {name: (r.created, r.failed) for name, r in results.items()}


def test_each_won_deal_is_invoiced_once_in_its_entitys_books(settings, sandbox, sandbox_server, monkeypatch, tmp_path):
    monkeypatch.setenv("IP_INVOICE_PAYMENT_TERMS_DAYS", "14")
    items = tmp_path / "my_accounts.csv"
    items.write_text("books_system,purpose,account_code,description\n"
                     "quickbooks,won_deal_invoice_item,2,our services item\n"
                     "xero,won_deal_invoice_account,260,other revenue\n")
    monkeypatch.setenv("IP_INVOICE_ITEMS_FILE", str(items))
    today = datetime.now(UTC).date()
    future = _plant_future_deal(sandbox, (today + timedelta(days=90)).isoformat())
    _extract_and_build(settings)

    routed = dict(((d, (e, b)) for d, e, b in warehouse_rows(
        settings, "SELECT source_id, legal_entity, books_system FROM core.deals WHERE source_system = 'salesforce'")))
    assert routed[US_DEAL] == ("Acme Trading Inc (US)", "quickbooks")
    assert routed[UK_DEAL] == ("Acme Trading Ltd (UK)", "xero")

    first = _run_all(settings)
    # every customer of a won deal is already in its books (core.customer_xref): only invoices are created
    assert first == {"won_deal_customers_to_quickbooks": (0, 0),
                     "won_deals_to_quickbooks_invoices": (WORLD_US_WON + 1, 0),
                     "won_deal_customers_to_xero": (0, 0), "won_deals_to_xero_invoices": (WORLD_UK_WON, 0)}

    url = sandbox_server.url
    [us] = qbo_invoices(url, US_DEAL)
    assert (us["TxnDate"], us["DueDate"], us["TotalAmt"], us["CurrencyRef"]["value"]) == \
        ("2026-03-15", "2026-03-29", 3840.0, "USD")
    assert us["Line"][0]["SalesItemLineDetail"]["ItemRef"]["value"] == "2"
    assert xero_invoices(url, US_DEAL) == []

    [uk] = xero_invoices(url, UK_DEAL)
    assert (uk["DateString"][:10], uk["DueDateString"][:10], uk["Total"], uk["CurrencyCode"], uk["Status"]) == \
        ("2026-04-05", "2026-04-19", 4800.0, "GBP", "DRAFT")
    assert xero_invoice(url, uk["InvoiceID"])["LineItems"][0]["AccountCode"] == "260"
    assert qbo_invoices(url, UK_DEAL) == []

    # won before its expected close date: dated the day it is invoiced, never in the future
    [early] = qbo_invoices(url, future)
    assert (early["TxnDate"], early["DueDate"], early["TotalAmt"]) == \
        (today.isoformat(), (today + timedelta(days=14)).isoformat(), 1250.5)
    assert xero_invoices(url, future) == []

    # a rerun, and a rerun after the books are read again, send nothing
    sandbox.state.clear_requests()
    assert _run_all(settings) == dict.fromkeys(ORDER, (0, 0))
    _extract_and_build(settings)
    sandbox.state.clear_requests()
    assert _run_all(settings) == dict.fromkeys(ORDER, (0, 0))
    assert posts_to(sandbox, "quickbooks") == [] and posts_to(sandbox, "xero") == []
    assert len(qbo_invoices(url, US_DEAL)) == 1 and len(xero_invoices(url, UK_DEAL)) == 1


HUBSPOT_STREAMS = (("hubspot", "contacts"), ("hubspot", "deals"), ("hubspot", "deal_contacts"))


def _plant_hubspot_only_deal(url: str) -> str:
    """A won deal keyed into HubSpot only, through HubSpot's API, with its contact as an association."""
    response = httpx.post(f"{url}/crm/v3/objects/deals", headers={
        "Authorization": f"Bearer {HUBSPOT.values['token'].sandbox}"}, json={
        "properties": {"dealname": "Hooli LLC - support add-on", "amount": "975.25", "deal_currency_code": "GBP",
                       "dealstage": "closedwon", "pipeline": "default", "closedate": "2026-03-20T00:00:00.000Z"},
        "associations": [{"to": {"id": UK_CONTACT_IN_HUBSPOT},
                          "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]}]})
    response.raise_for_status()
    return response.json()["id"]


def test_a_hubspot_won_deal_is_invoiced_once_even_when_salesforce_holds_it_too(settings, sandbox, sandbox_server):
    url = sandbox_server.url
    hubspot_only = _plant_hubspot_only_deal(url)
    # the group starts with Salesforce alone: its six won deals are invoiced
    _extract_and_build(settings)
    assert _run_all(settings) == {"won_deal_customers_to_quickbooks": (0, 0),
                                  "won_deals_to_quickbooks_invoices": (WORLD_US_WON, 0),
                                  "won_deal_customers_to_xero": (0, 0), "won_deals_to_xero_invoices": (WORLD_UK_WON, 0)}

    # then HubSpot is connected: its deal contacts are read from the associations, and only the deal that HubSpot
    # alone holds is new, although HubSpot's records of the six shared deals are the older ones
    for system, stream in HUBSPOT_STREAMS:
        materialize_all_partitions(settings, system, stream)
    build(settings)
    won = warehouse_rows(settings, "SELECT count(*), count(golden_customer_id) FROM core.deals "
                                   "WHERE source_system = 'hubspot' AND is_won")
    assert won == [(WORLD_US_WON + WORLD_UK_WON + 1, WORLD_US_WON + WORLD_UK_WON + 1)]
    sandbox.state.clear_requests()
    assert _run_all(settings) == {"won_deal_customers_to_quickbooks": (0, 0),
                                  "won_deals_to_quickbooks_invoices": (0, 0),
                                  "won_deal_customers_to_xero": (0, 0), "won_deals_to_xero_invoices": (1, 0)}
    assert posts_to(sandbox, "quickbooks") == []

    [added] = xero_invoices(url, hubspot_only, crm="hubspot")
    assert (added["DateString"][:10], added["DueDateString"][:10], added["Total"], added["CurrencyCode"]) == \
        ("2026-03-20", "2026-04-19", 975.25, "GBP")
    assert xero_invoice(url, added["InvoiceID"])["Contact"]["Name"] == \
        xero_invoices(url, UK_DEAL)[0]["Contact"]["Name"]  # the same customer as Hooli's renewal
    assert len(qbo_invoices(url, US_DEAL)) == 1 and qbo_invoices(url, US_DEAL_IN_HUBSPOT, crm="hubspot") == []
    assert len(xero_invoices(url, UK_DEAL)) == 1 and xero_invoices(url, UK_DEAL_IN_HUBSPOT, crm="hubspot") == []
    assert qbo_invoices(url, hubspot_only, crm="hubspot") == []


def test_a_deal_kept_in_both_crms_is_invoiced_once_from_its_first_record(settings, sandbox, sandbox_server):
    for system, stream in HUBSPOT_STREAMS:
        materialize_all_partitions(settings, system, stream)
    _extract_and_build(settings)
    assert _run_all(settings) == {"won_deal_customers_to_quickbooks": (0, 0),
                                  "won_deals_to_quickbooks_invoices": (WORLD_US_WON, 0),
                                  "won_deal_customers_to_xero": (0, 0), "won_deals_to_xero_invoices": (WORLD_UK_WON, 0)}
    url = sandbox_server.url
    # HubSpot's records of these two are the older ones: the invoice names them
    [us] = qbo_invoices(url, US_DEAL_IN_HUBSPOT, crm="hubspot")
    assert (us["TxnDate"], us["TotalAmt"], us["CurrencyRef"]["value"]) == ("2026-03-15", 3840.0, "USD")
    assert qbo_invoices(url, US_DEAL) == [] and xero_invoices(url, US_DEAL_IN_HUBSPOT, crm="hubspot") == []
    [uk] = xero_invoices(url, UK_DEAL_IN_HUBSPOT, crm="hubspot")
    assert (uk["DateString"][:10], uk["Total"], uk["CurrencyCode"]) == ("2026-04-05", 4800.0, "GBP")
    assert xero_invoices(url, UK_DEAL) == []
    # a rerun sends nothing
    sandbox.state.clear_requests()
    assert _run_all(settings) == dict.fromkeys(ORDER, (0, 0))
    assert posts_to(sandbox, "quickbooks") == [] and posts_to(sandbox, "xero") == []


def test_a_deal_invoiced_in_one_books_is_not_invoiced_again_when_its_entity_moves(settings, sandbox, sandbox_server,
                                                                                   monkeypatch, tmp_path):
    _extract_and_build(settings)
    assert sync(settings, "won_deals_to_quickbooks_invoices").created == WORLD_US_WON
    # the group now keeps the US company's books in Xero first (a migration): its deals route to Xero from here on
    entities = tmp_path / "entities.yaml"
    entities.write_text(
        "entities:\n"
        "  - {legal_entity: Acme Trading Inc (US), country: US, functional_currency: USD, books: [{system: xero}]}\n"
        "  - {legal_entity: Acme Trading Ltd (UK), country: GB, functional_currency: GBP, books: [{system: xero}]}\n")
    monkeypatch.setenv("IP_LEGAL_ENTITIES_FILE", str(entities))
    build(settings)
    assert warehouse_rows(settings, "SELECT books_system FROM core.deals WHERE source_id = ?", [US_DEAL]) == [("xero",)]
    sandbox.state.clear_requests()
    customers = sync(settings, "won_deal_customers_to_xero")
    invoices = sync(settings, "won_deals_to_xero_invoices")
    # only the UK deal: the US deals already have their QuickBooks invoices
    assert (customers.created, invoices.created) == (0, WORLD_UK_WON)
    assert xero_invoices(sandbox_server.url, US_DEAL) == []
    assert len(qbo_invoices(sandbox_server.url, US_DEAL)) == 1


def test_an_unusable_items_file_stops_the_plan_naming_it(settings, monkeypatch, tmp_path):
    from integration_pipelines.syncs.catalog.won_deals_to_accounting import SYNCS

    setting = next(s for s in SYNCS if s.name == "won_deals_to_xero_invoices").settings["invoice_item"]
    assert setting.value() == ""  # unset: the shipped ref.books_accounts row applies
    missing = tmp_path / "nope.csv"
    monkeypatch.setenv("IP_INVOICE_ITEMS_FILE", str(missing))
    with pytest.raises(ValueError, match=r"IP_INVOICE_ITEMS_FILE=.*nope\.csv: cannot read"):
        setting.value()
    other = tmp_path / "other.csv"
    other.write_text("books_system,purpose,account_code,description\nquickbooks,won_deal_invoice_item,7,x\n")
    monkeypatch.setenv("IP_INVOICE_ITEMS_FILE", str(other))
    with pytest.raises(ValueError, match="no row books_system=xero, purpose=won_deal_invoice_account"):
        setting.value()
    other.write_text("books_system,purpose,account_code,description\nxero,won_deal_invoice_account,0400,x\n")
    assert setting.value() == "0400"  # read as text: a leading zero stays
