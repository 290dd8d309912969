"""S10 acceptance for Square: every partial refund of a Square payment is journaled once, at its own amount and on
its own date, in the books of the payment's company, read back through QuickBooks' query API and Xero's manual
journals API.

Expected values are written by hand from the sandbox world (seed 7, anchored 2026-03-10) as Square records it:
- payment QHT5L2sj4GhdJ7cAmZZh9OLaVNnoi, USD 798.00, taken 2026-03-09, settles an invoice of the US company
  (QuickBooks). The seller refunds USD 100.00 on 2026-03-10 and USD 48.50 on 2026-03-11 (two PaymentRefunds).
- payment GVTjZoqJTskkH4Tbl1pb1N0i4ZIvt, GBP 396.00, taken 2026-03-09, settles an invoice of the UK company (Xero).
  The seller refunds GBP 50.00 on 2026-03-10.
Square's payment says only `refund_ids` and the total refunded (USD 148.50); before this stream existed the two US
refunds waited forever with no amount each. The sandbox books' accounts: QuickBooks sales refunds 38 and processor
clearing 36; Xero sales refunds 205 and clearing 615.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import httpx
import pytest

from integration_pipelines.webhooks.config import load_webhook_secrets
from integration_pipelines.webhooks.events import rows_for
from integration_pipelines.webhooks.server import ReceiverServer
from integration_pipelines.webhooks.simulator import Signer, Simulator, deliver
from integration_pipelines.webhooks.testing import make_receiver

from .conftest import materialize_all_partitions, materialize_stream
from .target_api import qbo_all, xero_get
from .test_core_models import build
from .test_event_to_books import _free_port
from .test_syncs import posts_to, sync
from .test_webhooks_ingest import Env

US_PAYMENT, UK_PAYMENT = "QHT5L2sj4GhdJ7cAmZZh9OLaVNnoi", "GVTjZoqJTskkH4Tbl1pb1N0i4ZIvt"
SYNCS = ("processor_refunds_to_quickbooks", "processor_refunds_to_xero")
REFUND_DAYS = ("2026-03-10", "2026-03-11")


@pytest.fixture(autouse=True)
def _fast_targets(settings, monkeypatch):
    for prefix in ("QUICKBOOKS", "XERO", "SQUARE"):
        monkeypatch.setenv(f"{prefix}_REQUESTS_PER_SECOND", "100")


def _refund(sandbox, payment: str, amount: int, at: str) -> str:
    """The seller refunds part of a payment in Square's Dashboard."""
    return sandbox.emulator("square").simulate("refunds", {"payment": payment, "amount": amount, "at": at,
                                                           "reason": "Returned goods"})["id"]


def _read(settings, *, refunds: bool) -> None:
    for system, stream in (("square", "payments"), ("quickbooks", "invoices"), ("xero", "invoices"),
                           ("xero", "manual_journals")):
        materialize_all_partitions(settings, system, stream)
    if refunds:
        for day in REFUND_DAYS:
            materialize_stream(settings, "square", "refunds", day)
    build(settings)


def _run(settings) -> dict[str, tuple[int, int]]:
    """(created, failed) per sync; entries another company's books hold wait in each sync, so waiting counts are
    not the point here."""
    results = {name: sync(settings, name) for name in SYNCS}
    return {name: (r.created, r.failed) for name, r in results.items()}


def _qbo_refund_entries(url: str) -> dict[str, dict]:
    return {entry["PrivateNote"].split()[2]: entry for entry in qbo_all(url, "JournalEntry")
            if (entry.get("PrivateNote") or "").startswith("square refund ")}


def test_each_partial_square_refund_is_journaled_once_at_its_own_amount_and_date(settings, sandbox, sandbox_server):
    first = _refund(sandbox, US_PAYMENT, 10000, "2026-03-10T15:00:00Z")
    second = _refund(sandbox, US_PAYMENT, 4850, "2026-03-11T09:30:00Z")
    uk = _refund(sandbox, UK_PAYMENT, 5000, "2026-03-10T11:00:00Z")

    # the payments are read before the refunds: Square's payment knows the refunds' ids and only their total, so
    # the two US refunds wait (no amount each) and nothing is booked at a guessed amount; the UK payment's single
    # refund is its whole total
    _read(settings, refunds=False)
    assert _run(settings) == {"processor_refunds_to_quickbooks": (0, 0), "processor_refunds_to_xero": (1, 0)}
    assert _qbo_refund_entries(sandbox_server.url) == {}

    # the refunds are read: each US refund is one entry at its own amount, on its own day; the UK one is not again
    _read(settings, refunds=True)
    assert _run(settings) == {"processor_refunds_to_quickbooks": (2, 0), "processor_refunds_to_xero": (0, 0)}
    entries = _qbo_refund_entries(sandbox_server.url)
    assert set(entries) == {first, second}
    assert (entries[first]["TxnDate"], entries[first]["TotalAmt"], entries[first]["CurrencyRef"]["value"]) == \
        ("2026-03-10", 100.0, "USD")
    assert (entries[second]["TxnDate"], entries[second]["TotalAmt"]) == ("2026-03-11", 48.5)
    assert {(line["JournalEntryLineDetail"]["PostingType"], line["JournalEntryLineDetail"]["AccountRef"]["value"],
             line["Amount"]) for line in entries[second]["Line"]} == {("Debit", "38", 48.5), ("Credit", "36", 48.5)}

    [uk_journal] = [j for j in xero_get(sandbox_server.url, "ManualJournals") if uk in j["Narration"]]
    assert uk_journal["Narration"] == (f"square refund {uk} of payment {UK_PAYMENT} (Acme Trading Ltd (UK)): 50.00 "
                                       f"GBP [refund square:{uk}]")
    [in_full] = xero_get(sandbox_server.url, f"ManualJournals/{uk_journal['ManualJournalID']}")
    assert {(line["AccountCode"], line["LineAmount"]) for line in in_full["JournalLines"]} == \
        {("205", 50.0), ("615", -50.0)}

    # reads and runs again: nothing more is sent anywhere
    _read(settings, refunds=True)
    sandbox.state.clear_requests()
    assert _run(settings) == dict.fromkeys(SYNCS, (0, 0))
    assert posts_to(sandbox, "quickbooks") == [] and posts_to(sandbox, "xero") == []


def test_a_square_refund_webhook_lands_the_refund_itself_by_its_version():
    """`refund.updated` carries the whole PaymentRefund (Square's webhook reference): it becomes the refund's row in
    raw_square.refunds, keyed by its id and versioned by its `updated_at`, so a late delivery of an older state
    cannot undo a newer one (the lane applies rows by version)."""
    refund = {"id": "QHT5L2sj4GhdJ7cAmZZh9OLaVNnoi_r1", "status": "COMPLETED", "payment_id": US_PAYMENT,
              "amount_money": {"amount": 4850, "currency": "USD"}, "location_id": "L1SANDBOX",
              "created_at": "2026-03-11T09:30:00.000Z", "updated_at": "2026-03-11T09:30:04.000Z"}
    payload = {"merchant_id": "MLSANDBOX0000", "type": "refund.updated", "event_id": "e-1",
               "created_at": "2026-03-11T09:30:05Z", "data": {"type": "refund", "id": refund["id"],
                                                              "object": {"refund": refund}}}
    [row] = rows_for("square", "e-1", {}, payload)
    assert (row.system, row.stream, row.pk, row.record) == ("square", "refunds", refund["id"], refund)
    assert row.version == datetime(2026, 3, 11, 9, 30, 4, tzinfo=UTC)


def test_a_square_refund_event_is_journaled_at_its_own_amount_through_the_receiver(settings, sandbox, sandbox_server,
                                                                                   monkeypatch):
    """The seller refunds USD 2.50 of the US payment and Square's signed `refund.created` reaches the receiver (the
    activity simulator's maker): the landed refund, not a later read, gives the journal entry its amount."""
    _read(settings, refunds=False)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("IP_WEBHOOK_PUBLIC_URL", url)
    receiver, _, config = make_receiver(settings.data_dir, public_url=url)
    simulator = Simulator(sandbox_server.url, Signer(load_webhook_secrets(), config), FixedChoice(US_PAYMENT, 250))
    with ReceiverServer(receiver, port=port), httpx.Client() as client:
        delivery = simulator.square_refund(client)
        assert deliver(client, url, delivery) == 200
        assert deliver(client, url, delivery) == 200  # Square retries: acknowledged, not landed twice
    refund = json.loads(delivery.body)["data"]["object"]["refund"]
    assert (refund["payment_id"], refund["amount_money"]) == (US_PAYMENT, {"amount": 250, "currency": "USD"})
    assert Env(settings.data_dir).drain() == 1
    build(settings)
    assert _run(settings) == {"processor_refunds_to_quickbooks": (1, 0), "processor_refunds_to_xero": (0, 0)}
    entry = _qbo_refund_entries(sandbox_server.url)[refund["id"]]
    assert (entry["TotalAmt"], entry["CurrencyRef"]["value"]) == (2.5, "USD")


class FixedChoice(random.Random):
    """The simulator's choices pinned: this payment, this amount (its other draws are not used here)."""

    def __init__(self, payment: str, amount: int) -> None:
        super().__init__(0)
        self.payment, self.amount = payment, amount

    def choice(self, seq):  # type: ignore[no-untyped-def, override]
        return next((x for x in seq if isinstance(x, dict) and x.get("id") == self.payment), self.amount)
