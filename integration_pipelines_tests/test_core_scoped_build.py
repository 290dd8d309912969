"""The event lane's scoped core rebuild: rebuilding only what a batch's changed raw tables reach must leave core
exactly as a full rebuild would, and must skip what they do not reach (the identity graph for a payment)."""

from __future__ import annotations

import shutil
from pathlib import Path

from integration_pipelines.connectors.registry import discover_systems
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.warehouse.models import build_committed, core_models, scope_of

from .test_core_models import build, extract

SYSTEMS = [(s.name, s.category) for s in discover_systems()]
IDENTITY = {"customers", "customer_xref", "customer_duplicates"}


def test_a_payment_reaches_payments_and_their_matches_not_the_identity_graph():
    entities, reached = scope_of({"raw_stripe.charges"})
    assert entities == {"payments", "payment_allocations"}
    # core.refunds reads core.payments (the legal entity a refund is booked in follows its payment's)
    assert reached == {"payment_allocations", "payments", "payment_matches", "refunds"}


def test_a_crm_contact_reaches_the_identity_graph_and_everything_keyed_by_customer():
    _, reached = scope_of({"raw_hubspot.contacts"})
    assert reached >= IDENTITY
    assert {"invoices", "payments", "deals", "orders", "tickets", "revenue_by_entity"} <= reached
    assert not {"products", "inventory", "purchase_orders", "expenses"} & reached


def test_a_stock_change_reaches_inventory_and_products_only():
    assert scope_of({"raw_odoo.products"})[1] == {"products", "inventory"}


def _core(con) -> dict[str, set[str]]:
    return {t: {r[0] for r in con.execute(f"SELECT to_json(q)::VARCHAR FROM (SELECT * EXCLUDE (_row_hash) "
                                          f"FROM {t}) AS q").fetchall()} for t, _, _ in core_models()}


def _change_the_world(db: Path) -> None:
    """What a batch of events does to raw tables: a charge refunded, a new contact in the CRM."""
    with Warehouse(str(db)).connect() as con:
        charge = con.execute("SELECT _pk FROM raw_stripe.charges ORDER BY _pk LIMIT 1").fetchone()[0]
        con.execute("""UPDATE raw_stripe.charges SET _raw = json_merge_patch(_raw,
                       '{"refunded": true, "amount_refunded": 500, "status": "succeeded"}') WHERE _pk = ?""",
                    [charge])
        # a person who exists nowhere else: a new golden customer (a copy of a contact under a new id and email)
        con.execute("""INSERT INTO raw_hubspot.contacts SELECT * REPLACE ('hs-new-by-hand' AS _pk,
                       json_merge_patch(_raw, '{"id": "hs-new-by-hand", "properties": {"email":
                       "new.person@example.invalid", "firstname": "Nova", "lastname": "Newcomer"}}') AS _raw)
                       FROM raw_hubspot.contacts ORDER BY _pk LIMIT 1""")


def test_a_scoped_rebuild_leaves_core_as_a_full_rebuild_would(settings, sandbox, tmp_path):
    extract(settings)
    build(settings)
    base = Path(settings.warehouse_database)
    _change_the_world(base)
    full, scoped = tmp_path / "full.duckdb", tmp_path / "scoped.duckdb"
    shutil.copy(base, full)
    shutil.copy(base, scoped)
    with Warehouse(str(full)).connect() as con:
        build_committed(con, SYSTEMS)
        expected = _core(con)
    touched: dict[str, set[str]] = {}
    for changed in ({"raw_stripe.charges"}, {"raw_hubspot.contacts"}):
        with Warehouse(str(scoped)).connect() as con:
            report = build_committed(con, SYSTEMS, changed_raw=changed)
            assert {t.split(".", 1)[1] for t in report.changes} == scope_of(changed)[1]
            touched[min(changed)] = {t for t, c in report.changes.items() if c.inserted or c.updated or c.deleted}
    with Warehouse(str(scoped)).connect() as con:
        got = _core(con)
    assert got.keys() == expected.keys()
    assert {t: (len(got[t] ^ expected[t])) for t in got if got[t] != expected[t]} == {}
    # the edits really moved core, so the equality above is not two untouched copies agreeing
    assert "core.payments" in touched["raw_stripe.charges"], touched
    assert "core.customers" in touched["raw_hubspot.contacts"], touched


def test_a_scoped_rebuild_before_the_first_full_build_builds_everything(settings, sandbox):
    extract(settings, ("stripe",))
    with Warehouse(settings.warehouse_database).connect() as con:
        report = build_committed(con, SYSTEMS, changed_raw={"raw_stripe.charges"})
    assert {t.split(".", 1)[1] for t in report.changes} >= IDENTITY
