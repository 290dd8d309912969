"""Scenario 10: card payments and refunds → balanced QuickBooks journal entries with the processor fee."""

from __future__ import annotations

import copy

import pytest

from .conftest import materialize_all_partitions, warehouse_rows
from .test_core_models import build
from .test_syncs import posts_to, sync


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")


FEES, REFUNDS = "processor_fees_to_quickbooks", "processor_refunds_to_quickbooks"


@pytest.fixture(autouse=True)
def _fast_target(settings, monkeypatch):
    monkeypatch.setenv("QUICKBOOKS_REQUESTS_PER_SECOND", "100")


def prepare(settings, sandbox, *, invalid: bool = False) -> dict:
    square = sandbox.emulator("square").payments
    completed = [p for p in square.values() if p["status"] == "COMPLETED" and not p.get("refunded_money")]
    refunded = completed[0]  # a partial refund of the first payment
    refunded["refunded_money"] = {"amount": refunded["amount_money"]["amount"] // 2,
                                  "currency": refunded["amount_money"]["currency"]}
    if invalid:  # a payment that reached us without its amount: QBO refuses lines without Amount
        bad = copy.deepcopy(completed[1])
        bad["id"] = "sq_invalid_payment_without_amount"
        bad["amount_money"] = {"currency": bad["amount_money"]["currency"]}
        square[bad["id"]] = bad
    for system, stream in (("square", "payments"), ("stripe", "charges")):
        materialize_all_partitions(settings, system, stream)
    build(settings)
    payments = [p for p in square.values()
                if p["status"] == "COMPLETED" and p["id"] != "sq_invalid_payment_without_amount"]
    assert len(payments) >= 3
    stripe_waiting = warehouse_rows(settings, "SELECT count(*) FROM core.payments WHERE source_system = 'stripe' "
                                              "AND kind = 'processor' AND status IN ('succeeded', 'refunded')")[0][0]
    stripe_refunds = warehouse_rows(settings, "SELECT count(*) FROM core.payments WHERE source_system = 'stripe' "
                                              "AND kind = 'processor' AND refunded_minor > 0")[0][0]
    return {"square": payments, "refunded": refunded, "stripe_waiting": stripe_waiting,
            "stripe_refunds": stripe_refunds}


def entries(sandbox, note: str) -> list[dict]:
    return [j for j in sandbox.emulator("quickbooks").dump("journal_entries") if j.get("PrivateNote") == note]


def lines(entry: dict) -> dict[tuple[str, str], int]:
    return {(line["JournalEntryLineDetail"]["PostingType"], line["JournalEntryLineDetail"]["AccountRef"]["value"]):
            round(line["Amount"] * 100) for line in entry["Line"]}


def assert_books(sandbox, planted: dict) -> None:
    for payment in planted["square"]:
        found = entries(sandbox, f"square payment {payment['id']}: gross, fee, net")
        assert len(found) == 1, f"{payment['id']}: {len(found)} entries"
        gross = payment["amount_money"]["amount"]
        fee = sum(f["amount_money"]["amount"] for f in payment["processing_fee"])
        assert lines(found[0]) == {("Credit", "4"): gross, ("Debit", "37"): fee, ("Debit", "36"): gross - fee}
    refunded = planted["refunded"]
    found = entries(sandbox, f"square refund of payment {refunded['id']}")
    assert len(found) == 1
    assert lines(found[0]) == {("Debit", "38"): refunded["refunded_money"]["amount"],
                               ("Credit", "36"): refunded["refunded_money"]["amount"]}
    all_entries = sandbox.emulator("quickbooks").dump("journal_entries")
    assert not any("stripe payment" in j.get("PrivateNote", "") for j in all_entries), "Stripe fees are unknown"
    assert len(all_entries) == len(planted["square"]) + 1 + planted["stripe_refunds"]


def test_payments_and_refunds_are_booked_once_with_fees(settings, sandbox):
    planted = prepare(settings, sandbox)
    sandbox.state.clear_requests()
    dry = sync(settings, FEES, dry_run=True)
    assert dry.plan.counts()["creates"] == len(planted["square"])
    assert dry.plan.counts()["waiting"] == planted["stripe_waiting"]  # no fee known for Stripe charges
    assert sandbox.state.request_log("quickbooks") == []

    fees = sync(settings, FEES)
    refunds = sync(settings, REFUNDS)
    assert (fees.created, fees.failed) == (len(planted["square"]), 0)
    assert (refunds.created, refunds.failed) == (1 + planted["stripe_refunds"], 0)
    assert_books(sandbox, planted)
    sandbox.state.clear_requests()
    assert sync(settings, FEES).plan.counts()["creates"] == 0
    assert sync(settings, REFUNDS).plan.counts()["creates"] == 0
    assert posts_to(sandbox, "quickbooks") == []


def test_faults_and_a_payment_without_amount(settings, sandbox, monkeypatch):
    planted = prepare(settings, sandbox, invalid=True)
    monkeypatch.setenv("QUICKBOOKS_MAX_RETRIES", "12")
    sandbox.set_faults("quickbooks", error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                       methods=["POST", "PUT", "PATCH"], seed=3)
    fees = sync(settings, FEES)
    refunds = sync(settings, REFUNDS)
    sandbox.clear_faults()
    assert any(r["fault"] for r in sandbox.state.request_log("quickbooks"))
    assert (fees.created, fees.failed) == (len(planted["square"]), 1)
    assert refunds.failed == 0
    assert_books(sandbox, planted)
    errors = warehouse_rows(settings, "SELECT record_key, operation, message FROM sync.errors")
    assert [(k, op) for k, op, _ in errors] == [("square:sq_invalid_payment_without_amount", "create")]
    assert "Line.Amount" in errors[0][2]
