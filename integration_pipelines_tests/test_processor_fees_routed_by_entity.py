"""S10 acceptance: a card payment's processor fee and each of its refunds are journaled once, in the books of the
entity whose invoice it pays, read back through the books' own APIs on the sandbox's emulators: QuickBooks' query
API for the US company, Xero's `GET /api.xro/2.0/ManualJournals` for the UK and German companies.

Expected values are written by hand from the sandbox world (seed 7, anchored 2026-03-10) and the payments planted
here, priced as the Stripe emulator documents Stripe's published prices for a domestic card (US 2.9% + 30¢, UK 1.5%
+ 20p, DE 1.5% + 0.25 €):
- Dennis Goldwasser (US) pays $100.00 of QuickBooks invoice INV-1058 (USD) by card on 2026-03-07: the fee is
  $2.90 + $0.30 = $3.20 and $96.80 reaches the processor's clearing account; he gets $10.00 back on 2026-03-08 and
  another $5.00 on 2026-03-09. The US company books in QuickBooks, so all three are journaled there, and only there.
- Tim Turing (GB) pays £100.00 of INV-1039 (GBP) on 2026-03-08: the UK company books in Xero. Its fee is £1.50 +
  £0.20 = £1.70 (net £98.30), journaled in Xero on 2026-03-08: merchant fees (404) debited £1.70, the card
  processor clearing account (615) credited £1.70. He gets £10.00 back on 2026-03-09: sales refunds (205) debited,
  clearing credited, £10.00.
- Grace Knuth (DE) pays €100.00 of INV-1011 (EUR) on 2026-03-08: the German company books in Xero too (the sandbox's
  one organisation stands in for each company's own): fee €1.50 + €0.25 = €1.75 (net €98.25), journaled the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from integration_pipelines.connectors.quickbooks import SYSTEM as QBO
from integration_pipelines.connectors.xero import SYSTEM as XERO
from integration_pipelines.sandbox import quickbooks as qbo_sandbox
from integration_pipelines.sandbox import xero as xero_sandbox
from integration_pipelines.syncs.registry import get_sync

from .conftest import materialize_all_partitions, materialize_stream, warehouse_rows
from .test_core_models import build
from .test_syncs import sync

FEES, REFUNDS = "processor_fees_to_quickbooks", "processor_refunds_to_quickbooks"
XERO_FEES, XERO_REFUNDS = "processor_fees_to_xero", "processor_refunds_to_xero"
# QuickBooks accounts of the sync (syncs/catalog/processor_fees_to_quickbooks.py): undeposited funds, processor
# clearing, merchant fees, sales refunds
UNDEPOSITED, CLEARING, FEES_ACCOUNT, REFUNDS_ACCOUNT = "4", "36", "37", "38"
# Xero accounts of the sync (syncs/catalog/processor_fees_to_xero.py): bank fees, card processor clearing, sales
# refunds
XERO_FEES_ACCOUNT, XERO_CLEARING, XERO_REFUNDS_ACCOUNT = "404", "615", "205"


@pytest.fixture(autouse=True)
def _fast_targets(settings, monkeypatch):
    for prefix in ("QUICKBOOKS", "XERO"):
        monkeypatch.setenv(f"{prefix}_REQUESTS_PER_SECOND", "100")


def _at(moment: str) -> float:
    return datetime.fromisoformat(moment).timestamp()


def qbo_journal_entries(url: str, mentioning: str) -> list[dict]:
    """QuickBooks journal entries whose memo names `mentioning`, through the query API (all pages)."""
    token = httpx.post(url + qbo_sandbox.TOKEN_PATH, auth=(QBO.values["client_id"].sandbox,
                                                           QBO.values["client_secret"].sandbox),
                       data={"grant_type": "refresh_token", "refresh_token": QBO.values["refresh_token"].sandbox})
    token.raise_for_status()
    headers = {"Accept": "application/json", "Authorization": f"Bearer {token.json()['access_token']}"}
    realm = QBO.values["realm_id"].sandbox
    found, start = [], 1
    while True:
        response = httpx.get(f"{url}/v3/company/{realm}/query", headers=headers, params={
            "query": f"SELECT * FROM JournalEntry STARTPOSITION {start} MAXRESULTS 1000", "minorversion": "75"})
        response.raise_for_status()
        page = response.json()["QueryResponse"].get("JournalEntry", [])
        found += page
        if len(page) < 1000:
            break
        start += 1000
    return sorted((j for j in found if mentioning in (j.get("PrivateNote") or "")), key=lambda j: j["TxnDate"])


def xero_manual_journals(url: str, mentioning: str) -> list[dict]:
    """Xero manual journals whose narration names `mentioning`, through Xero's own API (every page, journal lines
    included), oldest first."""
    token = httpx.post(url + xero_sandbox.TOKEN_PATH, auth=(XERO.values["client_id"].sandbox,
                                                            XERO.values["client_secret"].sandbox),
                       data={"grant_type": "refresh_token", "refresh_token": XERO.values["refresh_token"].sandbox})
    token.raise_for_status()
    headers = {"Accept": "application/json", "Authorization": f"Bearer {token.json()['access_token']}",
               "xero-tenant-id": XERO.values["tenant_id"].sandbox}
    found, page = [], 1
    while True:
        response = httpx.get(f"{url}/api.xro/2.0/ManualJournals", headers=headers, params={"page": page})
        response.raise_for_status()
        body = response.json()
        found += body["ManualJournals"]
        if page >= body["pagination"]["pageCount"]:
            break
        page += 1
    return sorted((j for j in found if mentioning in j["Narration"]), key=lambda j: (j["Date"], j["Narration"]))


def journal_day(journal: dict) -> str:
    """A Xero date (`/Date(1772928000000+0000)/`, midnight UTC) as YYYY-MM-DD."""
    return datetime.fromtimestamp(int(journal["Date"][6:-7]) / 1000, UTC).strftime("%Y-%m-%d")


def journal_lines(journal: dict) -> dict[str, float]:
    return {line["AccountCode"]: line["LineAmount"] for line in journal["JournalLines"]}


def lines(entry: dict) -> dict[tuple[str, str], float]:
    return {(line["JournalEntryLineDetail"]["PostingType"], line["JournalEntryLineDetail"]["AccountRef"]["value"]):
            line["Amount"] for line in entry["Line"]}


def extract_and_build(settings) -> None:
    for system, stream in (("stripe", "charges"), ("stripe", "refunds"), ("stripe", "balance_transactions"),
                           ("quickbooks", "invoices"), ("xero", "invoices")):
        materialize_all_partitions(settings, system, stream)
    build(settings)


def test_fee_and_every_partial_refund_are_journaled_once_in_the_entitys_books(settings, sandbox, sandbox_server):
    stripe = sandbox.emulator("stripe")
    stripe.set_clock(_at("2026-03-07T19:00:00+00:00"))
    us = stripe.simulate("charges", {"email": "dennis.goldwasser19@aperture7.example.com", "amount": 10000,
                                     "currency": "usd", "invoice_number": "INV-1058"})
    stripe.set_clock(_at("2026-03-08T12:00:00+00:00"))
    stripe.simulate("refunds", {"charge": us["id"], "amount": 1000})
    stripe.set_clock(_at("2026-03-08T15:00:00+00:00"))
    uk = stripe.simulate("charges", {"email": "tim.turing26@initech2.example.com", "amount": 10000,
                                     "currency": "gbp", "invoice_number": "INV-1039"})
    extract_and_build(settings)
    assert warehouse_rows(settings, "SELECT source_id, legal_entity FROM core.payments WHERE source_id IN (?, ?) "
                                    "ORDER BY legal_entity DESC", [us["id"], uk["id"]]) == \
        [(uk["id"], "Acme Trading Ltd (UK)"), (us["id"], "Acme Trading Inc (US)")]

    assert (sync(settings, FEES).failed, sync(settings, REFUNDS).failed) == (0, 0)
    url = sandbox_server.url
    fee, first = qbo_journal_entries(url, us["id"])
    assert (fee["TxnDate"], fee["CurrencyRef"]["value"], fee["TotalAmt"]) == ("2026-03-07", "USD", 100.00)
    assert lines(fee) == {("Credit", UNDEPOSITED): 100.00, ("Debit", FEES_ACCOUNT): 3.20, ("Debit", CLEARING): 96.80}
    assert (first["TxnDate"], first["CurrencyRef"]["value"]) == ("2026-03-08", "USD")
    assert lines(first) == {("Debit", REFUNDS_ACCOUNT): 10.00, ("Credit", CLEARING): 10.00}
    assert qbo_journal_entries(url, uk["id"]) == [], "the UK company's payment is not booked in the US books"

    # a second partial refund the next day: one more entry at its own amount and date, nothing booked twice
    stripe.set_clock(_at("2026-03-09T12:00:00+00:00"))
    stripe.simulate("refunds", {"charge": us["id"], "amount": 500})
    materialize_stream(settings, "stripe", "refunds", "2026-03-09")
    materialize_stream(settings, "stripe", "charges", "2026-03-07")
    build(settings)
    fees, refunds = sync(settings, FEES), sync(settings, REFUNDS)
    assert (fees.created, refunds.created, refunds.failed) == (0, 1, 0)
    entries = qbo_journal_entries(url, us["id"])
    assert [(e["TxnDate"], e["TotalAmt"]) for e in entries] == \
        [("2026-03-07", 100.00), ("2026-03-08", 10.00), ("2026-03-09", 5.00)]
    assert lines(entries[2]) == {("Debit", REFUNDS_ACCOUNT): 5.00, ("Credit", CLEARING): 5.00}

    # the UK payment waits in QuickBooks' sync with its reason: its books are Xero's
    [(reason,)] = warehouse_rows(settings, f"SELECT waiting_reason FROM ({get_sync(FEES).source_sql}) "
                                           "WHERE payment_id = ?", [uk["id"]])
    assert reason == ("Acme Trading Ltd (UK) keeps its books in xero: its entries are journaled by the xero syncs, "
                      "not in another company's quickbooks")
    assert qbo_journal_entries(url, uk["id"]) == []


def test_uk_and_german_fees_and_refunds_are_journaled_once_in_xero_and_us_ones_only_in_quickbooks(
        settings, sandbox, sandbox_server):
    stripe = sandbox.emulator("stripe")
    stripe.set_clock(_at("2026-03-07T19:00:00+00:00"))
    us = stripe.simulate("charges", {"email": "dennis.goldwasser19@aperture7.example.com", "amount": 10000,
                                     "currency": "usd", "invoice_number": "INV-1058"})
    stripe.set_clock(_at("2026-03-08T15:00:00+00:00"))
    uk = stripe.simulate("charges", {"email": "tim.turing26@initech2.example.com", "amount": 10000,
                                     "currency": "gbp", "invoice_number": "INV-1039"})
    stripe.set_clock(_at("2026-03-08T16:00:00+00:00"))
    de = stripe.simulate("charges", {"email": "grace.knuth11@aperture11.example.com", "amount": 10000,
                                     "currency": "eur", "invoice_number": "INV-1011"})
    stripe.set_clock(_at("2026-03-09T10:00:00+00:00"))
    uk_refund = stripe.simulate("refunds", {"charge": uk["id"], "amount": 1000})
    extract_and_build(settings)
    materialize_stream(settings, "xero", "manual_journals")
    assert warehouse_rows(settings, "SELECT source_id, legal_entity FROM core.payments WHERE source_id IN (?, ?, ?) "
                                    "ORDER BY legal_entity", [us["id"], uk["id"], de["id"]]) == \
        [(de["id"], "Acme Trading GmbH (DE)"), (us["id"], "Acme Trading Inc (US)"), (uk["id"], "Acme Trading Ltd (UK)")]

    runs = {name: sync(settings, name) for name in (FEES, REFUNDS, XERO_FEES, XERO_REFUNDS)}
    assert {name: result.failed for name, result in runs.items()} == dict.fromkeys(runs, 0)
    url = sandbox_server.url

    [uk_fee, uk_back] = xero_manual_journals(url, uk["id"])
    assert (journal_day(uk_fee), uk_fee["Status"], uk_fee["LineAmountTypes"]) == ("2026-03-08", "POSTED", "NoTax")
    assert uk_fee["Narration"] == (f"stripe payment {uk['id']} (Acme Trading Ltd (UK)): gross 100.00, fee 1.70, "
                                   f"net 98.30 GBP [fee stripe:{uk['id']}]")
    assert journal_lines(uk_fee) == {XERO_FEES_ACCOUNT: 1.70, XERO_CLEARING: -1.70}
    assert (journal_day(uk_back), uk_back["Status"]) == ("2026-03-09", "POSTED")
    assert uk_back["Narration"] == (f"stripe refund {uk_refund['id']} of payment {uk['id']} (Acme Trading Ltd (UK)): "
                                    f"10.00 GBP [refund stripe:{uk_refund['id']}]")
    assert journal_lines(uk_back) == {XERO_REFUNDS_ACCOUNT: 10.00, XERO_CLEARING: -10.00}

    [de_fee] = xero_manual_journals(url, de["id"])
    assert (journal_day(de_fee), de_fee["Status"]) == ("2026-03-08", "POSTED")
    assert de_fee["Narration"] == (f"stripe payment {de['id']} (Acme Trading GmbH (DE)): gross 100.00, fee 1.75, "
                                   f"net 98.25 EUR [fee stripe:{de['id']}]")
    assert journal_lines(de_fee) == {XERO_FEES_ACCOUNT: 1.75, XERO_CLEARING: -1.75}

    # the US company's entries are in its QuickBooks only; the UK and German ones in no QuickBooks
    assert xero_manual_journals(url, us["id"]) == []
    assert [e["TotalAmt"] for e in qbo_journal_entries(url, us["id"])] == [100.00]
    assert qbo_journal_entries(url, uk["id"]) == [] and qbo_journal_entries(url, de["id"]) == []

    # a second run, after Xero's journals are read back, creates nothing anywhere
    materialize_stream(settings, "xero", "manual_journals")
    sandbox.state.clear_requests()
    again = {name: sync(settings, name) for name in runs}
    assert {name: (r.created, r.linked, r.failed) for name, r in again.items()} == dict.fromkeys(runs, (0, 0, 0))
    assert [r for r in sandbox.state.request_log("xero") if r["method"] != "GET"] == []
    assert len(xero_manual_journals(url, uk["id"])) == 2 and len(xero_manual_journals(url, de["id"])) == 1
