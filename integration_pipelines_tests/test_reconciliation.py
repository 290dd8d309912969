"""Reconciliation finds exactly the mismatches planted in the sandbox world, and no others."""

from __future__ import annotations

import dagster as dg

from integration_pipelines.assets.reconciliation import build_all_reconciliations, build_reconciliation_assets
from integration_pipelines.resources import WarehouseResource
from integration_pipelines.settings import Settings
from integration_pipelines.warehouse.duckdb import Warehouse

from .conftest import warehouse_rows
from .test_core_models import build, extract
from .test_syncs import prepare, sync

SYSTEMS = ("stripe", "square", "hubspot", "quickbooks")


def test_exactly_the_planted_mismatches(settings, sandbox):
    extract(settings, SYSTEMS)
    build(settings)
    result = dg.materialize([build_reconciliation_assets(Settings())],
                            resources={"warehouse": WarehouseResource(database=settings.warehouse_database)})
    assert result.success
    world = sandbox.state.world
    short = next(p for p in world.payments if p.key == world.anomalies["payment_amount_mismatch"])
    orphan = next(p for p in world.payments if p.key == world.anomalies["payment_without_invoice"])

    findings = warehouse_rows(settings, """
        SELECT finding, processor_system, processor_amount_minor, books_system, books_amount_minor, invoice_id
        FROM reconciliation.payments_vs_accounting WHERE finding <> 'matched' ORDER BY finding""")
    assert [(f[0], f[1]) for f in findings] == [("amount_mismatch", "stripe"), ("missing_in_accounting", "stripe")]
    # each finding's count is a number in the run's metadata, which Dagster plots across runs (the Plots tab)
    metadata = result.asset_materializations_for_node("reconciliation")
    [payments] = [m.metadata for m in metadata if m.asset_key.path[-1] == "payments_vs_accounting"]
    assert (payments["finding_amount_mismatch"].value, payments["finding_missing_in_accounting"].value) == (1, 1)
    mismatch, missing = findings
    # both sides named: the short card payment against the full amount the books recorded
    assert mismatch[2] == short.amount and mismatch[4] == short.invoice.amount and mismatch[3] == "quickbooks"
    assert missing[2] == orphan.amount and missing[3] is None
    matched = warehouse_rows(settings, "SELECT count(*) FROM reconciliation.payments_vs_accounting "
                                       "WHERE finding = 'matched'")[0][0]
    assert matched == len([p for p in world.payments if p.invoice is not None]) - 1

    assert warehouse_rows(settings, "SELECT count(*) FROM reconciliation.invoices_vs_payments") == [(0,)]
    conflicts = warehouse_rows(settings, "SELECT crm_system, crm_email, accounting_email "
                                         "FROM reconciliation.customers_crm_vs_accounting")
    duplicate = world.people[world.anomalies["crm_duplicate_contact"]]
    assert conflicts == [("hubspot", conflicts[0][1], duplicate.email.lower())]

    checks = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    assert not checks["payments_vs_accounting"].passed
    assert checks["payments_vs_accounting"].severity == dg.AssetCheckSeverity.WARN
    assert checks["invoices_vs_payments"].passed


def test_a_payment_that_never_reached_the_books_is_found_then_cleared_by_the_sync(settings, sandbox):
    planted = prepare(settings, sandbox, charges=1)
    invoice, charge_id = planted[0]
    with Warehouse(settings.warehouse_database).connect() as con:
        build_all_reconciliations(con)
    rows = warehouse_rows(settings, "SELECT processor_payment_id, invoice_number "
                                    "FROM reconciliation.invoices_vs_payments")
    assert rows == [(charge_id, invoice.number)]  # paid by card, still open in the books
    open_paid = warehouse_rows(settings, "SELECT finding FROM reconciliation.payments_vs_accounting "
                                         "WHERE processor_payment_id = ?", [charge_id])
    assert open_paid == [("missing_in_accounting",)]
    sync(settings, "payments_to_quickbooks")
    extract(settings, ("quickbooks",))
    build(settings)
    with Warehouse(settings.warehouse_database).connect() as con:
        build_all_reconciliations(con)
    assert warehouse_rows(settings, "SELECT finding FROM reconciliation.payments_vs_accounting "
                                    "WHERE processor_payment_id = ?", [charge_id]) == [("matched",)]
    assert warehouse_rows(settings, "SELECT count(*) FROM reconciliation.invoices_vs_payments") == [(0,)]


def test_erp_and_storefront_stock_agree_until_the_erp_moves(settings, sandbox):
    systems = ("sap", "shopify", "square")
    extract(settings, systems)
    build(settings)
    with Warehouse(settings.warehouse_database).connect() as con:
        summary = build_all_reconciliations(con)
    assert set(summary["inventory_erp_vs_storefront"]) == {"stock_matched"}

    moved = sandbox.emulator("sap").touch("material_stock", 1)
    assert moved
    extract(settings, ("sap",))
    build(settings)
    with Warehouse(settings.warehouse_database).connect() as con:
        build_all_reconciliations(con)
    rows = warehouse_rows(settings, "SELECT erp_system, storefront_system, erp_quantity, storefront_quantity "
                                    "FROM reconciliation.inventory_erp_vs_storefront WHERE finding = 'stock_mismatch'")
    assert {r[1] for r in rows} == {"shopify", "square"} and all(r[0] == "sap" and r[2] != r[3] for r in rows)


def test_won_deals_without_an_invoice_are_the_missed_invoices(settings, sandbox):
    extract(settings, ("salesforce", "quickbooks"))
    build(settings)
    with Warehouse(settings.warehouse_database).connect() as con:
        build_all_reconciliations(con)
    missed = warehouse_rows(settings, "SELECT crm_system, deal_id, golden_customer_id FROM "
                                      "reconciliation.deals_vs_invoices")
    won = [o for o in sandbox.emulator("salesforce").dump("opportunities") if o["IsWon"]]
    # the world bills no deal yet: every won opportunity is a missed invoice, each tied to its customer
    assert sorted(r[1] for r in missed) == sorted(o["Id"] for o in won) and won
    assert all(r[0] == "salesforce" and r[2] for r in missed)
