"""Core models from the sandbox world: facts of the world must come out of the warehouse."""

from __future__ import annotations

import shutil
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from integration_pipelines.connectors.registry import discover_systems
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.warehouse.models import build_all

from .conftest import materialize_all_partitions, warehouse_rows

CORE_SYSTEMS = ("stripe", "hubspot", "quickbooks")


def extract(settings, systems=CORE_SYSTEMS) -> None:
    for name in systems:
        system = next(s for s in discover_systems() if s.name == name)
        for stream in system.streams:
            materialize_all_partitions(settings, name, stream.name)


def build(settings):
    with Warehouse(settings.warehouse_database).connect() as con:
        con.execute("BEGIN")
        report = build_all(con, [(s.name, s.category) for s in discover_systems()])
        con.execute("COMMIT")
    return report


_STRIPE_CORE: dict[str, Path] = {}


def stripe_core_warehouse(settings, tmp_path_factory) -> None:
    """Stripe extracted and the core models built, in `settings`' warehouse. The sandbox world is the same in
    every test (same seed), so it is built once per session and copied."""
    target = Path(settings.warehouse_database)
    if "db" in _STRIPE_CORE:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(_STRIPE_CORE["db"], target)
        return
    extract(settings, ("stripe",))
    build(settings)
    _STRIPE_CORE["db"] = tmp_path_factory.mktemp("stripe_core_warehouse") / "warehouse.duckdb"
    shutil.copy(target, _STRIPE_CORE["db"])


@pytest.fixture
def built(settings, sandbox):
    extract(settings)
    return build(settings)


def test_every_world_person_is_one_golden_customer(settings, sandbox, built):
    world = sandbox.state.world
    golden = warehouse_rows(settings, "SELECT count(*) FROM core.customers")[0][0]
    assert golden == len(world.people)
    # every person's email (as the world knows it) maps to exactly one golden customer
    emails = {p.email.lower() for p in world.people}
    assert {r[0] for r in warehouse_rows(settings, "SELECT email FROM core.customers")} == emails


def test_case_different_email_and_duplicate_contact_collapse(settings, sandbox, built):
    world = sandbox.state.world
    person = world.people[world.anomalies["crm_email_case_differs"]]
    rows = warehouse_rows(settings, """
        SELECT x.source_system, x.golden_id, c.email FROM core.customer_xref x
        JOIN staging.customer_records c USING (source_system, source_id)
        WHERE lower(c.email) = ?""", [person.email.lower()])
    assert {r[0] for r in rows} >= {"hubspot", "quickbooks"} and len({r[1] for r in rows}) == 1
    assert any(r[2] != person.email for r in rows if r[0] == "hubspot"), "the CRM holds the mixed-case email"

    duplicate = world.people[world.anomalies["crm_duplicate_contact"]]
    dupes = warehouse_rows(settings, "SELECT source_system, email_a, email_b, match_rule FROM core.customer_duplicates")
    assert len(dupes) == 1 and dupes[0][0] == "hubspot" and dupes[0][3] == "phone+last_name"
    assert duplicate.email.lower() in (dupes[0][1], dupes[0][2])


def test_payment_without_invoice_is_flagged(settings, sandbox, built):
    rows = warehouse_rows(settings, "SELECT source_system, invoice_status FROM core.payments "
                                    "WHERE invoice_status <> 'matched'")
    assert rows == [("stripe", "no_invoice")]
    # every accounting payment, and every other Stripe charge, settles a QuickBooks invoice
    world_paid = [p for p in sandbox.state.world.payments if p.invoice is not None]
    expected = len(world_paid) + len([p for p in world_paid if p.processor == "stripe"])
    matched = warehouse_rows(settings, "SELECT count(*) FROM core.payments WHERE invoice_system = 'quickbooks'")
    assert matched[0][0] == expected


def test_consolidated_revenue_per_subsidiary_in_usd(settings, sandbox, built):
    """The shipped demo group (seeds/legal_entities.yaml): with only QuickBooks extracted, its USD invoices are the
    US company's and its GBP and EUR copies stand in for the UK and German books (Xero) not read yet; each invoice
    at the shipped demo rate of its month (seeds/fx_rates.csv, 2026-03-01), rounded per invoice."""
    world = sandbox.state.world
    entity = {"USD": "Acme Trading Inc (US)", "GBP": "Acme Trading Ltd (UK)", "EUR": "Acme Trading GmbH (DE)"}
    rates = {"USD": Decimal(1), "GBP": Decimal("1.2622"), "EUR": Decimal("1.0643")}
    expected: dict[str, int] = {}
    for invoice in world.invoices:
        usd = int((invoice.amount * rates[invoice.currency]).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        expected[entity[invoice.currency]] = expected.get(entity[invoice.currency], 0) + usd
    got = dict(warehouse_rows(settings, "SELECT legal_entity, sum(revenue_minor) FROM core.revenue_by_entity "
                                        "GROUP BY 1"))
    assert got == expected
    assert warehouse_rows(settings, "SELECT DISTINCT reporting_currency FROM core.revenue_by_entity") == [("USD",)]


def test_rebuild_with_unchanged_raw_changes_nothing(settings, sandbox, built):
    before = warehouse_rows(settings, "SELECT * FROM core.customer_xref ORDER BY 1, 2")
    report = build(settings)
    assert all(c.inserted == c.updated == c.deleted == 0 for c in report.changes.values()), report.changes
    assert warehouse_rows(settings, "SELECT * FROM core.customer_xref ORDER BY 1, 2") == before


def test_golden_ids_survive_a_new_system_and_a_changed_record(settings, sandbox, built):
    before = dict(((s, i), g) for s, i, g in warehouse_rows(
        settings, "SELECT source_system, source_id, golden_id FROM core.customer_xref"))
    sandbox.emulator("hubspot").touch("contacts", 3)
    extract(settings, ("hubspot",))
    report = build(settings)
    after = dict(((s, i), g) for s, i, g in warehouse_rows(
        settings, "SELECT source_system, source_id, golden_id FROM core.customer_xref"))
    assert after == before
    assert report.changes["core.customer_xref"].updated == 0


def test_core_assets_materialize_with_checks(settings, sandbox):
    import dagster as dg

    from integration_pipelines.assets.core import build_core_assets
    from integration_pipelines.resources import WarehouseResource

    extract(settings)
    core = build_core_assets([s for s in discover_systems() if s.name in CORE_SYSTEMS])
    result = dg.materialize([core], resources={"warehouse": WarehouseResource(database=settings.warehouse_database)},
                            selection=dg.AssetSelection.all())
    assert result.success
    checks = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    assert checks[("customers", "unique_key")].passed and checks[("payments", "key_not_null")].passed
    assert checks[("invoices", "totals_match_staging")].passed
    assert checks[("revenue_by_entity", "fx_rates_cover_currencies")].passed
    # the planted mess shows as warnings a person can act on
    unsettled = checks[("payments", "payments_settle_an_invoice")]
    assert not unsettled.passed and unsettled.severity == dg.AssetCheckSeverity.WARN
    assert unsettled.metadata["unsettled"].value == 1
    assert not checks[("customer_duplicates", "no_duplicates_in_sources")].passed
    materialized = {m.asset_key.path[-1]: m.metadata for m in result.get_asset_materialization_events()
                    for m in [m.materialization]}
    assert materialized["customers"]["dagster/row_count"].value == len(sandbox.state.world.people)
    # the UI describes each column the entity's contract documents (models/contracts.yaml)
    invoice_columns = {c.name: c.description for c in materialized["invoices"]["dagster/column_schema"].schema.columns}
    assert invoice_columns["balance_minor"] == "amount still due in minor units"
    assert invoice_columns["status"].startswith("open | paid | void | draft")
