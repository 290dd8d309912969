"""Every system extracted together into one warehouse: every staging model builds, and the same people,
recorded in up to ten systems, still resolve to one golden customer each."""

from __future__ import annotations

import pytest

from integration_pipelines.connectors.registry import discover_systems

from .conftest import warehouse_rows
from .test_core_models import build, extract

pytestmark = pytest.mark.slow


def test_all_systems_build_one_consistent_picture(settings, sandbox):
    systems = tuple(s.name for s in discover_systems())
    extract(settings, systems)
    report = build(settings)
    raw_tables = {f"raw_{s.name}.{st.name}" for s in discover_systems() for st in s.streams}
    skipped = {m: t for m, t in report.staging_skipped.items() if set(t) & raw_tables}
    assert not skipped, f"staging models skipped although their systems were extracted: {skipped}"

    world = sandbox.state.world
    golden = warehouse_rows(settings, "SELECT email FROM core.customers WHERE email IS NOT NULL")
    assert {e for (e,) in golden} >= {p.email.lower() for p in world.people}
    # each world person is one golden customer, whichever systems hold them
    per_person = warehouse_rows(settings, """
        SELECT lower(c.email), count(DISTINCT x.golden_id) FROM staging.customer_records c
        JOIN core.customer_xref x USING (source_system, source_id)
        WHERE c.email IS NOT NULL GROUP BY 1 HAVING count(DISTINCT x.golden_id) > 1""")
    assert per_person == []
    systems_per_customer = warehouse_rows(settings, "SELECT max(len(systems)) FROM core.customers")[0][0]
    assert systems_per_customer >= 5

    # each invoice counted once across the two accounting systems (books of record per legal entity)
    books = warehouse_rows(settings, "SELECT count(*), count(DISTINCT invoice_number) FROM core.invoices "
                                     "WHERE is_books_of_record")[0]
    assert books == (len(world.invoices), len(world.invoices))
    for table in ("orders", "products", "inventory", "deals", "tickets", "purchase_orders"):
        assert warehouse_rows(settings, f"SELECT count(*) FROM core.{table}")[0][0] > 0, table
