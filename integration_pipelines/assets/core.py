"""Core models as Dagster assets: `core/<table>`, built together in one short warehouse transaction (they are
one consistent picture; building half of it would leave payments pointing at customers of another build), with
asset checks that show in the UI: unique and not-null keys, referential integrity, reconciliation-ready totals.
"""

import graphlib
from collections.abc import Sequence
from datetime import timedelta

import dagster as dg
import duckdb

from ..alerts import alert_on_check_results
from ..connectors.spec import System
from ..resources import WarehouseResource
from ..warehouse.models import build_committed, contracts, core_lineage
from .automation import AFTER_RAW_UPDATES
from .extract import WAREHOUSE_POOL

CORE_TABLES = {
    "customers": ("golden_id",),
    "customer_xref": ("source_system", "source_id"),
    "customer_duplicates": ("source_system", "source_id_a", "source_id_b"),
    "customer_entities": ("golden_id",),
    **{name: ("source_system", "source_id") for name in contracts() if name != "customer_records"},
    "payment_matches": ("processor_system", "processor_payment_id", "books_system", "books_payment_id"),
    "revenue_by_entity": ("legal_entity", "month"),
    "receivables_by_entity": ("legal_entity",),
}
DESCRIPTIONS = {
    "customers": "One golden customer per real customer across every system (identity-resolved).",
    "customer_xref": "Every source customer record → its golden id, with the rule that matched it.",
    "customer_duplicates": "Customers recorded twice inside one system: fix these at the source.",
    "customer_entities": "The group company that issues each customer's new invoices (S4 won deals, S5 "
                         "milestones) and the books it keeps them in: the customer's country matched to the "
                         "legal-entities file, else the group's first company.",
    "payment_matches": "Which payment in the books records each card payment: by the processor's id in its "
                       "memo/reference, else by amount on the same invoices; ambiguous candidates are listed, "
                       "never chosen.",
    "revenue_by_entity": "Consolidated revenue per issuing legal entity and month, in the reporting currency "
                         "(IP_REPORTING_CURRENCY), intercompany eliminated.",
    "receivables_by_entity": "Open (not draft, not paid) receivables per issuing legal entity, in the reporting "
                             "currency, intercompany eliminated.",
    **{name: c.description for name, c in contracts().items()},
}
# Core reads the raw tables only. Webhook events reach it through the event lane (webhooks/lane.py), which
# rebuilds core itself right after applying a batch and reports the core tables that changed; the automation
# condition here rebuilds core after extract runs (a backfill, a manual extract).
FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=25))


def _key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["core", table])


def _column(table: str, name: str, kind: str) -> dg.TableColumn:
    """A core column, described in the UI by its entity's contract (models/contracts.yaml) where the contract has it;
    columns core adds (legal entity, identity, books of record) are described in their model's SQL header."""
    contract = contracts().get(table)
    described = contract.columns.get(name, {}) if contract else {}
    return dg.TableColumn(name, kind, description=described.get("description"))


def _check_specs() -> list[dg.AssetCheckSpec]:
    specs = []
    for table in CORE_TABLES:
        specs.append(dg.AssetCheckSpec("unique_key", asset=_key(table),
                                       description=f"no two rows share {', '.join(CORE_TABLES[table])}"))
        specs.append(dg.AssetCheckSpec("key_not_null", asset=_key(table), description="no key column is null"))
    specs += [
        dg.AssetCheckSpec("payments_settle_an_invoice", asset=_key("payments"),
                          description="every payment settles a known invoice (WARN lists the ones that do not)"),
        dg.AssetCheckSpec("customers_resolved", asset=_key("payments"),
                          description="every payment's payer maps to a golden customer"),
        dg.AssetCheckSpec("customers_resolved", asset=_key("invoices"),
                          description="every invoice's customer maps to a golden customer"),
        dg.AssetCheckSpec("totals_match_staging", asset=_key("invoices"),
                          description="per source and currency, core totals equal the staged source totals"),
        dg.AssetCheckSpec("fx_rates_cover_currencies", asset=_key("revenue_by_entity"),
                          description="every invoice currency has an FX rate (ref.fx_rates)"),
        dg.AssetCheckSpec("no_duplicates_in_sources", asset=_key("customer_duplicates"),
                          description="no system holds the same customer twice"),
    ]
    return specs


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(con.execute(sql).fetchone()[0])


def _run_checks(con: duckdb.DuckDBPyConnection) -> list[dg.AssetCheckResult]:
    results = []
    for table, key in CORE_TABLES.items():
        cols = ", ".join(f'"{k}"' for k in key)
        dupes = _count(con, f"SELECT count(*) - count(DISTINCT ({cols})) FROM core.{table}")
        nulls = _count(con, f"SELECT count(*) FROM core.{table} WHERE " + " OR ".join(f'"{k}" IS NULL' for k in key))
        results.append(dg.AssetCheckResult(asset_key=_key(table), check_name="unique_key", passed=dupes == 0,
                                           metadata={"duplicate_keys": dupes}))
        results.append(dg.AssetCheckResult(asset_key=_key(table), check_name="key_not_null", passed=nulls == 0,
                                           metadata={"rows_with_null_key": nulls}))
    unsettled = con.execute(
        "SELECT source_system, source_id, invoice_status, amount_minor, currency FROM core.payments "
        "WHERE invoice_status <> 'matched' ORDER BY 1, 2 LIMIT 20").fetchall()
    results.append(dg.AssetCheckResult(
        asset_key=_key("payments"), check_name="payments_settle_an_invoice", passed=not unsettled,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"unsettled": _count(con, "SELECT count(*) FROM core.payments WHERE invoice_status <> 'matched'"),
                  "examples": dg.MetadataValue.md(_md(["system", "id", "status", "amount_minor", "currency"],
                                                      unsettled))}))
    for table, column in (("payments", "customer_source_id"), ("invoices", "customer_source_id")):
        missing = _count(con, f"SELECT count(*) FROM core.{table} WHERE {column} IS NOT NULL "
                              "AND golden_customer_id IS NULL")
        results.append(dg.AssetCheckResult(
            asset_key=_key(table), check_name="customers_resolved", passed=missing == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"unresolved": missing, "hint": "extract the customers stream of that system"}))
    mismatched = con.execute("""
        SELECT s.source_system, s.currency, s.total, c.total FROM
          (SELECT source_system, currency, sum(total_minor) total FROM staging.invoices GROUP BY ALL) s
          FULL JOIN (SELECT source_system, currency, sum(total_minor) total FROM core.invoices GROUP BY ALL) c
          USING (source_system, currency)
        WHERE s.total IS DISTINCT FROM c.total""").fetchall()
    results.append(dg.AssetCheckResult(asset_key=_key("invoices"), check_name="totals_match_staging",
                                       passed=not mismatched, metadata={"mismatches": str(mismatched)}))
    no_rate = _count(con, "SELECT coalesce(sum(invoices_without_rate), 0) FROM core.revenue_by_entity")
    results.append(dg.AssetCheckResult(asset_key=_key("revenue_by_entity"), check_name="fx_rates_cover_currencies",
                                       passed=no_rate == 0, metadata={"invoices_without_rate": no_rate}))
    dupes = con.execute("SELECT source_system, source_id_a, source_id_b, match_rule FROM core.customer_duplicates "
                        "ORDER BY 1, 2 LIMIT 20").fetchall()
    results.append(dg.AssetCheckResult(
        asset_key=_key("customer_duplicates"), check_name="no_duplicates_in_sources", passed=not dupes,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"pairs": dg.MetadataValue.md(_md(["system", "record a", "record b", "rule"], dupes))}))
    return results


def _md(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) if rows else "none"


def build_core_assets(systems: Sequence[System]) -> dg.AssetsDefinition:
    # exact lineage: each core table depends on the extracts its SQL reads (through the staging models' headers)
    # and on the core tables it reads, as the SQL says (warehouse.models.core_lineage)
    extract_of = {f"raw_{s.name}.{st.name}": dg.AssetKey([s.name, st.name]) for s in systems for st in s.streams}
    lineage = core_lineage()

    def deps_of(table: str) -> list[dg.AssetKey]:
        raw, cores = lineage.get(table, (frozenset(), frozenset()))
        return sorted((extract_of[t] for t in raw if t in extract_of), key=lambda k: k.path) + [
            _key(c) for c in sorted(cores) if c in CORE_TABLES]

    build_order = list(graphlib.TopologicalSorter(
        {t: [c for c in lineage.get(t, ((), ()))[1] if c in CORE_TABLES] for t in CORE_TABLES}).static_order())
    specs = [
        dg.AssetSpec(_key(table), group_name="core", description=DESCRIPTIONS.get(table, table),
                     deps=deps_of(table), kinds={"duckdb", "sql"}, freshness_policy=FRESHNESS,
                     automation_condition=AFTER_RAW_UPDATES,
                     metadata={"table": f"core.{table}", "key": ", ".join(CORE_TABLES[table])})
        for table in CORE_TABLES
    ]
    system_rows = [(s.name, s.category) for s in systems]

    @dg.multi_asset(name="core_models", specs=specs, check_specs=_check_specs(), pool=WAREHOUSE_POOL)
    def core_models(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        """Seeds → staging → identity resolution → core tables, then the checks, in one short transaction."""
        with warehouse.get(log=context.log).connect() as con:
            report = build_committed(con, system_rows)
            if report.staging_skipped:
                context.log.info("Not built yet (their raw tables do not exist): "
                                 + "; ".join(f"{m} needs {', '.join(t)}" for m, t in report.staging_skipped.items()))
            for table in build_order:  # a table after the core tables it reads (Dagster requires it)
                change = report.changes[f"core.{table}"]
                columns = con.execute(f"DESCRIBE core.{table}").fetchall()
                yield dg.MaterializeResult(asset_key=_key(table), metadata={
                    "dagster/row_count": change.rows,
                    "dagster/table_name": f"core.{table}",
                    "dagster/column_schema": dg.TableSchema(
                        columns=[_column(table, c[0], c[1]) for c in columns if c[0] != "_row_hash"]),
                    "inserted": change.inserted, "updated": change.updated, "deleted": change.deleted,
                    "unchanged": change.unchanged,
                    "staging_models_built": ", ".join(report.staging_built) or "none",
                })
            checks = _run_checks(con)
        alert_on_check_results(checks)
        yield from checks

    return core_models
