"""Scenario 7: approved expense receipts → QuickBooks purchases, once each, under faults, one bad one alone."""

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


NAME = "expenses_to_quickbooks"
ACCOUNTS = {"travel": "58", "lodging": "58", "meals": "13", "office_supplies": "15", "software": "29"}


@pytest.fixture(autouse=True)
def _fast_target(settings, monkeypatch):
    monkeypatch.setenv("QUICKBOOKS_REQUESTS_PER_SECOND", "100")


def prepare(settings, sandbox, *, invalid: bool = False) -> list[dict]:
    """The receipts that must reach the books (approved or reimbursed), plus an unmapped category if asked."""
    receipts = sandbox.emulator("expense_tool").objects["expense_receipts"]
    if invalid:
        bad = copy.deepcopy(next(r for r in receipts.values() if r["status"] == "approved"))
        bad.update(receipt_id="rcpt_99999", category="golf_club_fees")
        receipts["rcpt_99999"] = bad
    materialize_all_partitions(settings, "expense_tool", "expense_receipts")
    build(settings)
    due = [r for r in receipts.values() if r["status"] in ("approved", "reimbursed") and r["category"] in ACCOUNTS]
    assert len(due) >= 5
    return due


def purchases_for(sandbox, receipt_id: str) -> list[dict]:
    return [p for p in sandbox.emulator("quickbooks").dump("purchases")
            if p.get("PrivateNote", "").startswith(f"expense_tool receipt {receipt_id} ")]


def assert_books(sandbox, due: list[dict]) -> None:
    for receipt in due:
        found = purchases_for(sandbox, receipt["receipt_id"])
        assert len(found) == 1, f"{receipt['receipt_id']}: {len(found)} purchases"
        purchase = found[0]
        assert round(purchase["TotalAmt"] * 100) == receipt["amount_minor"]
        assert purchase["TxnDate"] == receipt["spent_on"] and purchase["PaymentType"] == "Cash"
        line = purchase["Line"][0]["AccountBasedExpenseLineDetail"]
        assert line["AccountRef"]["value"] == ACCOUNTS[receipt["category"]]
    total = len(sandbox.emulator("quickbooks").dump("purchases"))
    assert total == len(due), "only approved or reimbursed receipts, each once"


def test_receipts_become_purchases_once(settings, sandbox):
    due = prepare(settings, sandbox)
    sandbox.state.clear_requests()
    dry = sync(settings, NAME, dry_run=True)
    assert dry.plan.counts()["creates"] == len(due) and sandbox.state.request_log("quickbooks") == []

    result = sync(settings, NAME)
    assert (result.created, result.failed) == (len(due), 0)
    assert_books(sandbox, due)
    sandbox.state.clear_requests()
    assert sync(settings, NAME).plan.counts()["creates"] == 0
    assert posts_to(sandbox, "quickbooks") == []


def test_faults_and_an_unmapped_category(settings, sandbox, monkeypatch):
    due = prepare(settings, sandbox, invalid=True)
    monkeypatch.setenv("QUICKBOOKS_MAX_RETRIES", "12")
    sandbox.set_faults("quickbooks", error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                       methods=["POST", "PUT", "PATCH"], seed=3)
    result = sync(settings, NAME)
    sandbox.clear_faults()
    assert any(r["fault"] for r in sandbox.state.request_log("quickbooks"))
    assert (result.created, result.failed) == (len(due), 1)
    assert_books(sandbox, due)  # a retried write was replayed by its requestid, never booked twice
    errors = warehouse_rows(settings, "SELECT record_key, operation, message FROM sync.errors")
    assert [(k, op) for k, op, _ in errors] == [("expense_tool:rcpt_99999", "create")]
    assert "AccountRef" in errors[0][2]
