"""Scenario 5: reached billing milestones (PM tool) → QuickBooks invoices, once each, under faults too."""

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


NAME = "milestones_to_quickbooks"


@pytest.fixture(autouse=True)
def _fast_target(settings, monkeypatch):
    monkeypatch.setenv("QUICKBOOKS_REQUESTS_PER_SECOND", "100")
    monkeypatch.setenv("PM_TOOL_REQUESTS_PER_SECOND", "100")


def prepare(settings, sandbox, *, invalid: bool = False) -> list[dict]:
    """Reached milestones whose client is a QuickBooks customer: what must be invoiced."""
    pm = sandbox.emulator("pm_tool").objects
    if invalid:  # a milestone reached without an amount: QBO refuses the invoice line
        bad = copy.deepcopy(next(m for m in pm["billing_milestones"].values() if m["status"] == "reached"))
        bad.update(id="ms_9999", amount_minor=None)
        pm["billing_milestones"]["ms_9999"] = bad
    for stream in ("billing_milestones", "projects"):
        materialize_all_partitions(settings, "pm_tool", stream)
    materialize_all_partitions(settings, "quickbooks", "customers")
    build(settings)
    qbo_emails = {(c.get("PrimaryEmailAddr") or {}).get("Address", "").lower()
                  for c in sandbox.emulator("quickbooks").dump("customers")}
    due = [m for m in pm["billing_milestones"].values() if m["status"] == "reached" and m["amount_minor"]
           and (pm["projects"][m["project_id"]]["client_email"] or "").lower() in qbo_emails]
    assert len(due) >= 4
    return due


def invoices_for(sandbox, milestone_id: str) -> list[dict]:
    return [i for i in sandbox.emulator("quickbooks").dump("invoices")
            if i.get("PrivateNote", "").startswith(f"pm_tool milestone {milestone_id} ")]


def assert_books(sandbox, due: list[dict]) -> None:
    pm = sandbox.emulator("pm_tool").objects
    customers = {c["Id"]: (c.get("PrimaryEmailAddr") or {}).get("Address", "").lower()
                 for c in sandbox.emulator("quickbooks").dump("customers")}
    for milestone in due:
        found = invoices_for(sandbox, milestone["id"])
        assert len(found) == 1, f"{milestone['id']}: {len(found)} invoices"
        invoice = found[0]
        assert invoice["DocNumber"] == f"INV-M{milestone['id'][3:]}"
        assert round(invoice["TotalAmt"] * 100) == milestone["amount_minor"]
        assert customers[invoice["CustomerRef"]["value"]] == pm["projects"][milestone["project_id"]]["client_email"]
    billed = [i for i in sandbox.emulator("quickbooks").dump("invoices") if i["DocNumber"].startswith("INV-M")]
    assert len(billed) == len(due)


def test_reached_milestones_are_invoiced_once(settings, sandbox):
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


def test_faults_and_a_milestone_without_amount(settings, sandbox, monkeypatch):
    due = prepare(settings, sandbox, invalid=True)
    monkeypatch.setenv("QUICKBOOKS_MAX_RETRIES", "12")
    sandbox.set_faults("quickbooks", error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                       methods=["POST", "PUT", "PATCH"], seed=3)
    result = sync(settings, NAME)
    sandbox.clear_faults()
    assert any(r["fault"] for r in sandbox.state.request_log("quickbooks"))
    assert (result.created, result.failed) == (len(due), 1)
    assert_books(sandbox, due)
    errors = warehouse_rows(settings, "SELECT record_key, operation, message FROM sync.errors")
    assert [(k, op) for k, op, _ in errors] == [("ms_9999", "create")]
    assert "Line.Amount" in errors[0][2]
