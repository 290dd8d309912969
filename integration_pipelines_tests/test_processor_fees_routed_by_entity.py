"""S10 acceptance: a card payment's processor fee and each of its refunds are journaled once, in the books of the
entity whose invoice it pays, read back through QuickBooks' own query API on the sandbox's emulator.

Expected values are written by hand from the sandbox world (seed 7, anchored 2026-03-10) and the payments planted
here, priced as the Stripe emulator documents Stripe's published price for a US card, 2.9% + 30¢:
- Dennis Goldwasser (US) pays $100.00 of QuickBooks invoice INV-1058 (USD) by card on 2026-03-07: the fee is
  $2.90 + $0.30 = $3.20 and $96.80 reaches the processor's clearing account; he gets $10.00 back on 2026-03-08 and
  another $5.00 on 2026-03-09. The US company books in QuickBooks, so all three are journaled there.
- Tim Turing (GB) pays £100.00 of INV-1039 (GBP) on 2026-03-08: the UK company books in Xero, which has no journal
  writer, so nothing is booked anywhere and the payment waits, saying why.
"""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from integration_pipelines.connectors.quickbooks import SYSTEM as QBO
from integration_pipelines.sandbox import quickbooks as qbo_sandbox
from integration_pipelines.syncs.registry import get_sync

from .conftest import materialize_all_partitions, materialize_stream, warehouse_rows
from .test_core_models import build
from .test_syncs import sync

FEES, REFUNDS = "processor_fees_to_quickbooks", "processor_refunds_to_quickbooks"
# QuickBooks accounts of the sync (syncs/catalog/processor_fees_to_quickbooks.py): undeposited funds, processor
# clearing, merchant fees, sales refunds
UNDEPOSITED, CLEARING, FEES_ACCOUNT, REFUNDS_ACCOUNT = "4", "36", "37", "38"


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

    # the UK payment waits in QuickBooks' sync with its reason, and is in no books
    [(reason,)] = warehouse_rows(settings, f"SELECT waiting_reason FROM ({get_sync(FEES).source_sql}) "
                                           "WHERE payment_id = ?", [uk["id"]])
    assert reason == ("Acme Trading Ltd (UK) keeps its books in xero, which has no journal-entry writer yet: not "
                      "booked in another company's quickbooks")
    assert qbo_journal_entries(url, uk["id"]) == []
