"""Match before create: a record the source says already exists in the target is linked, never created.

A sync's source can hand the engine the target's id of a record (`external_id_column`): a customer someone keyed
into the books by hand, an order found by its reference in the extracted target. In `insert` mode such a record is
recorded in the ledger with that id (status `linked`) and no write is sent; from then on it is a synced record, so
no later run creates it, even when the source stops giving the id. Checked against the QuickBooks emulator.
"""

from __future__ import annotations

from typing import Any

import pytest

from integration_pipelines.syncs.engine import run_sync
from integration_pipelines.syncs.spec import SyncSpec
from integration_pipelines.warehouse.duckdb import Warehouse

from .conftest import warehouse_rows

NAME = "link_customers_to_books"


def _spec() -> SyncSpec:
    return SyncSpec(
        name=NAME, title="Customers → QuickBooks (links existing ones)", description="engine link test",
        source_sql="SELECT customer_key, display_name, email, qbo_id FROM link_model", key="customer_key",
        target="quickbooks", mode="insert", create_writer="save_customer", external_id_column="qbo_id",
        payload={"DisplayName": "{display_name}", "PrimaryEmailAddr": {"Address": "{email}"}})


def _load(settings, rows: list[tuple[str, str, str, str | None]]) -> Warehouse:
    warehouse = Warehouse(settings.warehouse_database)
    with warehouse.connect() as con:
        con.execute("CREATE OR REPLACE TABLE link_model (customer_key VARCHAR, display_name VARCHAR, email VARCHAR, "
                    "qbo_id VARCHAR)")
        con.executemany("INSERT INTO link_model VALUES (?, ?, ?, ?)", rows)
    return warehouse


def _customers_named(sandbox, name: str) -> list[dict[str, Any]]:
    return [c for c in sandbox.emulator("quickbooks").dump("customers") if c["DisplayName"] == name]


def _writes(sandbox) -> list[dict[str, Any]]:
    log = sandbox.state.request_log("quickbooks")
    return [r for r in log if r["method"] == "POST" and r["path"].endswith("/customer")]


def _ledger(settings) -> dict[str, tuple[str | None, str]]:
    return {k: (e, s) for k, e, s in warehouse_rows(
        settings, "SELECT record_key, external_id, status FROM sync.ledger WHERE sync_name = ?", [NAME])}


@pytest.fixture
def existing(sandbox) -> dict[str, Any]:
    """A customer already in the books (the world's first one)."""
    return sandbox.emulator("quickbooks").dump("customers")[0]


def test_a_record_the_source_finds_in_the_target_is_linked_not_created(settings, sandbox, existing):
    warehouse = _load(settings, [
        ("crm-1", existing["DisplayName"], "kept@example.com", existing["Id"]),  # already in the books
        ("crm-2", "Linkless Lighthouse Ltd", "light@example.com", None),  # new
        ("crm-3", "Blank Id Bakery", "bakery@example.com", "  "),  # a blank id is no id: new
    ])
    before = len(sandbox.emulator("quickbooks").dump("customers"))

    dry = run_sync(_spec(), warehouse, settings, run_id="dry", dry_run=True)
    assert dry.plan.counts() == {"creates": 2, "updates": 0, "deletes": 0, "unchanged": 0, "waiting": 0,
                                 "linked": 1}
    assert _ledger(settings) == {} and _writes(sandbox) == []

    result = run_sync(_spec(), warehouse, settings, run_id="run-1")
    assert (result.created, result.linked, result.failed) == (2, 1, 0)
    books = sandbox.emulator("quickbooks").dump("customers")
    assert len(books) == before + 2
    assert len(_customers_named(sandbox, existing["DisplayName"])) == 1
    new_ids = {name: _customers_named(sandbox, name)[0]["Id"]
               for name in ("Linkless Lighthouse Ltd", "Blank Id Bakery")}
    assert _ledger(settings) == {"crm-1": (existing["Id"], "linked"),
                                 "crm-2": (new_ids["Linkless Lighthouse Ltd"], "synced"),
                                 "crm-3": (new_ids["Blank Id Bakery"], "synced")}
    assert len(_writes(sandbox)) == 2  # the linked record cost no request
    assert warehouse_rows(settings, "SELECT planned_creates, created, planned_linked, linked, in_doubt FROM sync.runs "
                                    "WHERE sync_name = ? AND NOT dry_run", [NAME]) == [(2, 2, 1, 1, 0)]


def test_a_linked_record_is_never_created_later(settings, sandbox, existing):
    rows = [("crm-1", existing["DisplayName"], "kept@example.com", existing["Id"])]
    warehouse = _load(settings, rows)
    assert run_sync(_spec(), warehouse, settings, run_id="run-1").linked == 1

    sandbox.state.clear_requests()
    again = run_sync(_spec(), warehouse, settings, run_id="run-2")
    assert again.plan.counts() == {"creates": 0, "updates": 0, "deletes": 0, "unchanged": 1, "waiting": 0}
    # the source loses the id (the target's extract is stale, the match changed): the ledger still knows it
    _load(settings, [("crm-1", existing["DisplayName"], "kept@example.com", None)])
    later = run_sync(_spec(), warehouse, settings, run_id="run-3")
    assert (later.plan.counts()["creates"], later.created, later.linked) == (0, 0, 0)
    assert _writes(sandbox) == []
    assert len(_customers_named(sandbox, existing["DisplayName"])) == 1
    assert _ledger(settings) == {"crm-1": (existing["Id"], "linked")}


def test_a_failed_create_whose_record_turns_up_in_the_target_is_linked(settings, sandbox, existing):
    """A create refused earlier (ledger `failed`, no id) whose record someone then made by hand: the source now
    finds it, so it is linked instead of being sent again."""
    warehouse = _load(settings, [("crm-9", existing["DisplayName"], "x@example.com", existing["Id"])])
    with warehouse.connect() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS sync")
    run_sync(_spec(), warehouse, settings, run_id="dry", dry_run=True)  # creates the ledger tables
    with warehouse.connect() as con:
        con.execute("INSERT INTO sync.ledger VALUES (?, 'crm-9', NULL, NULL, 'failed', 1, 'refused', NULL, 'r0')",
                    [NAME])
    result = run_sync(_spec(), warehouse, settings, run_id="run-1")
    assert (result.created, result.linked) == (0, 1)
    assert _ledger(settings) == {"crm-9": (existing["Id"], "linked")}
    assert _writes(sandbox) == []
