"""Scenario 10: card payments and refunds → balanced QuickBooks journal entries with the processor fee, in the books
of the payment's legal entity only (the US company books in QuickBooks; the UK and German companies in Xero, so
theirs wait here with a stated reason and are journaled by the Xero syncs: test_sync_processor_fees_to_xero.py)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import duckdb
import pytest

from integration_pipelines.syncs.ledger import ensure_ledger
from integration_pipelines.syncs.registry import get_sync

from .conftest import PARTITIONS, materialize_all_partitions, warehouse_rows
from .test_core_models import build
from .test_syncs import posts_to, sync


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")


FEES, REFUNDS = "processor_fees_to_quickbooks", "processor_refunds_to_quickbooks"
SOURCES = (("square", "payments"), ("stripe", "charges"), ("stripe", "refunds"), ("stripe", "balance_transactions"),
           ("quickbooks", "invoices"))


@pytest.fixture(autouse=True)
def _fast_target(settings, monkeypatch):
    monkeypatch.setenv("QUICKBOOKS_REQUESTS_PER_SECOND", "100")


def extract_and_build(settings) -> None:
    for system, stream in SOURCES:
        materialize_all_partitions(settings, system, stream)
    build(settings)


def prepare(settings, sandbox, *, invalid: bool = False) -> dict:
    """The world's card payments, one US Square payment partly refunded; each payment's entity is that of the invoice
    it pays, and the world invoices every customer in their own currency: USD → the US company (QuickBooks)."""
    square = sandbox.emulator("square").payments
    completed = [p for p in square.values() if p["status"] == "COMPLETED" and not p.get("refunded_money")]
    usd = [p for p in completed if p["amount_money"]["currency"] == "USD"]
    refunded = usd[0]  # a partial refund of a US payment
    refunded["refunded_money"] = {"amount": refunded["amount_money"]["amount"] // 2,
                                  "currency": refunded["amount_money"]["currency"]}
    refunded["refund_ids"] = ["sq_planted_refund_0001"]
    if invalid:  # a payment that reached us without its amount: QBO refuses lines without Amount
        bad = copy.deepcopy(usd[1])
        bad["id"] = "sq_invalid_payment_without_amount"
        bad["amount_money"] = {"currency": bad["amount_money"]["currency"]}
        square[bad["id"]] = bad
    extract_and_build(settings)
    square_paid = [p for p in square.values()
                   if p["status"] == "COMPLETED" and p["id"] != "sq_invalid_payment_without_amount"]
    stripe = sandbox.emulator("stripe")
    fees = {t["source"]: t["fee"] for t in stripe.dump("balance_transactions") if t["type"] == "charge"}
    stripe_paid = [c for c in stripe.dump("charges") if c["metadata"].get("accounting_invoice")]
    orphans = [c for c in stripe.dump("charges") if not c["metadata"].get("accounting_invoice")]
    assert len(orphans) == 1, "the world plants one Stripe payment without an invoice"
    return {
        "square_us": [p for p in square_paid if p["amount_money"]["currency"] == "USD"],
        "square_other": [p for p in square_paid if p["amount_money"]["currency"] != "USD"],
        "stripe_us": [(c, fees[c["id"]]) for c in stripe_paid if c["currency"] == "usd"],
        "stripe_other": [c for c in stripe_paid if c["currency"] != "usd"],
        "orphan": orphans[0], "refunded": refunded,
    }


def entries(sandbox, note: str) -> list[dict]:
    return [j for j in sandbox.emulator("quickbooks").dump("journal_entries") if j.get("PrivateNote") == note]


def lines(entry: dict) -> dict[tuple[str, str], int]:
    return {(line["JournalEntryLineDetail"]["PostingType"], line["JournalEntryLineDetail"]["AccountRef"]["value"]):
            round(line["Amount"] * 100) for line in entry["Line"]}


def assert_books(sandbox, planted: dict) -> None:
    for payment in planted["square_us"]:
        found = entries(sandbox, f"square payment {payment['id']}: gross, fee, net")
        assert len(found) == 1, f"{payment['id']}: {len(found)} entries"
        gross = payment["amount_money"]["amount"]
        fee = sum(f["amount_money"]["amount"] for f in payment["processing_fee"])
        assert lines(found[0]) == {("Credit", "4"): gross, ("Debit", "37"): fee, ("Debit", "36"): gross - fee}
    for charge, fee in planted["stripe_us"]:
        found = entries(sandbox, f"stripe payment {charge['id']}: gross, fee, net")
        assert len(found) == 1, f"{charge['id']}: {len(found)} entries"
        assert lines(found[0]) == {("Credit", "4"): charge["amount"], ("Debit", "37"): fee,
                                   ("Debit", "36"): charge["amount"] - fee}
    refunded = planted["refunded"]
    [found] = entries(sandbox, f"square refund sq_planted_refund_0001 of payment {refunded['id']}")
    assert lines(found) == {("Debit", "38"): refunded["refunded_money"]["amount"],
                            ("Credit", "36"): refunded["refunded_money"]["amount"]}
    notes = [j.get("PrivateNote", "") for j in sandbox.emulator("quickbooks").dump("journal_entries")]
    for payment in planted["square_other"]:
        assert not any(payment["id"] in n for n in notes), "a UK or German payment is never booked in US books"
    for charge in [*planted["stripe_other"], planted["orphan"]]:
        assert not any(charge["id"] in n for n in notes)
    assert len(notes) == len(planted["square_us"]) + len(planted["stripe_us"]) + 1


def test_payments_and_refunds_are_booked_once_with_fees_in_their_entitys_books(settings, sandbox):
    planted = prepare(settings, sandbox)
    assert planted["square_us"] and planted["stripe_us"] and planted["square_other"] and planted["stripe_other"]
    sandbox.state.clear_requests()
    dry = sync(settings, FEES, dry_run=True)
    assert dry.plan.counts()["creates"] == len(planted["square_us"]) + len(planted["stripe_us"])
    # UK and German payments (Xero books: the Xero syncs journal them) and the payment without an invoice wait
    assert dry.plan.counts()["waiting"] == len(planted["square_other"]) + len(planted["stripe_other"]) + 1
    assert sandbox.state.request_log("quickbooks") == []

    fees = sync(settings, FEES)
    refunds = sync(settings, REFUNDS)
    assert (fees.created, fees.failed) == (len(planted["square_us"]) + len(planted["stripe_us"]), 0)
    assert (refunds.created, refunds.failed) == (1, 0)
    assert_books(sandbox, planted)
    sandbox.state.clear_requests()
    assert sync(settings, FEES).plan.counts()["creates"] == 0
    assert sync(settings, REFUNDS).plan.counts()["creates"] == 0
    assert posts_to(sandbox, "quickbooks") == []


def test_every_waiting_entry_says_why(settings, sandbox):
    planted = prepare(settings, sandbox)
    with duckdb.connect(settings.warehouse_database) as con:
        ensure_ledger(con)  # the source reads the other books' ledgers (an entry is booked in one books only)
    rows = warehouse_rows(settings, f"SELECT entry_key, legal_entity, books_route, waiting_reason FROM "
                                    f"({get_sync(FEES).source_sql}) WHERE books_route IS NULL")
    reasons = {key: (entity, reason) for key, entity, _, reason in rows}
    uk = next(p for p in planted["square_other"] if p["amount_money"]["currency"] == "GBP")
    assert reasons[f"square:{uk['id']}"] == (
        "Acme Trading Ltd (UK)", "Acme Trading Ltd (UK) keeps its books in xero: its entries are journaled by the "
        "xero syncs, not in another company's quickbooks")
    orphan = planted["orphan"]["id"]
    assert reasons[f"stripe:{orphan}"] == (
        "Unassigned", "no legal entity: the payment settles no invoice of the books of record, so whose books it "
        "belongs in is unknown (legal_entity Unassigned)")
    assert len(reasons) == len(planted["square_other"]) + len(planted["stripe_other"]) + 1


def test_faults_and_a_payment_without_amount(settings, sandbox, monkeypatch):
    planted = prepare(settings, sandbox, invalid=True)
    monkeypatch.setenv("QUICKBOOKS_MAX_RETRIES", "12")
    sandbox.set_faults("quickbooks", error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                       methods=["POST", "PUT", "PATCH"], seed=3)
    fees = sync(settings, FEES)
    refunds = sync(settings, REFUNDS)
    sandbox.clear_faults()
    assert any(r["fault"] for r in sandbox.state.request_log("quickbooks"))
    assert (fees.created, fees.failed) == (len(planted["square_us"]) + len(planted["stripe_us"]), 1)
    assert refunds.failed == 0
    assert_books(sandbox, planted)
    errors = warehouse_rows(settings, "SELECT record_key, operation, message FROM sync.errors")
    assert [(k, op) for k, op, _ in errors] == [("square:sq_invalid_payment_without_amount", "create")]
    assert "Line.Amount" in errors[0][2]


def test_a_refund_booked_by_the_per_payment_sync_is_linked_and_only_a_later_one_is_booked(settings, sandbox):
    """Before refunds were read one by one, the sync booked one entry per payment (`stripe:<charge>:refund`) at the
    amount refunded by then. Upgrading must not book that money again: refunds made before that entry was pushed
    are linked to it; a refund made afterwards is a new entry at its own amount."""
    stripe = sandbox.emulator("stripe")
    charge = next(c for c in stripe.dump("charges") if c["currency"] == "usd"
                  and c["metadata"].get("accounting_invoice"))
    stripe.set_clock(datetime.fromisoformat(f"{PARTITIONS[2]}T08:00:00+00:00").timestamp())
    early = stripe.refund(charge["id"], 700)
    stripe.set_clock(datetime.fromisoformat(f"{PARTITIONS[2]}T20:00:00+00:00").timestamp())
    late = stripe.refund(charge["id"], 300)
    extract_and_build(settings)
    with duckdb.connect(settings.warehouse_database) as con:
        ensure_ledger(con)
        con.execute("INSERT INTO sync.ledger (sync_name, record_key, row_hash, external_id, status, last_synced_at) "
                    "VALUES (?, ?, 'old-hash', '4242', 'synced', ?)",
                    [REFUNDS, f"stripe:{charge['id']}:refund", datetime(2026, 3, 9, 12, tzinfo=UTC)])
    sandbox.state.clear_requests()
    result = sync(settings, REFUNDS)
    assert (result.created, result.linked, result.failed) == (1, 1, 0)
    assert len([r for r in posts_to(sandbox, "quickbooks") if r["path"].endswith("/journalentry")]) == 1
    [entry] = entries(sandbox, f"stripe refund {late['id']} of payment {charge['id']}")
    assert lines(entry) == {("Debit", "38"): 300, ("Credit", "36"): 300} and entry["TxnDate"] == "2026-03-09"
    assert entries(sandbox, f"stripe refund {early['id']} of payment {charge['id']}") == []
    ledger = dict(warehouse_rows(settings, "SELECT record_key, external_id FROM sync.ledger WHERE sync_name = ?",
                                 [REFUNDS]))
    assert ledger[f"stripe:{early['id']}"] == "4242"
