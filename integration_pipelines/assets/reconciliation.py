"""Reconciliation: the systems checked against each other every night, as `reconciliation/<check>` assets.

Each check is SQL in `warehouse/models/reconciliation/`, rebuilt into the `reconciliation` schema after the core
models; every mismatch row names the records on both sides. Asset checks turn mismatch counts into WARN or ERROR
in the UI (thresholds IP_RECONCILIATION_WARN_AT / IP_RECONCILIATION_ERROR_AT).
"""

from pathlib import Path

import dagster as dg
import duckdb

from ..alerts import alert_on_check_results
from ..resources import WarehouseResource
from ..settings import Settings
from ..warehouse.models import MODELS_DIR
from .automation import AFTER_UPSTREAM_UPDATES
from .core import CORE_TABLES
from .extract import WAREHOUSE_POOL

RECONCILIATION_DIR: Path = MODELS_DIR / "reconciliation"


def reconciliation_models() -> dict[str, str]:
    return {path.stem: path.read_text() for path in sorted(RECONCILIATION_DIR.glob("*.sql"))}


def _description(sql: str) -> str:
    lines = [line[2:].strip() for line in sql.splitlines() if line.startswith("--")]
    return " ".join(lines)


def build_all_reconciliations(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    """Rebuild every reconciliation table; returns finding counts per table."""
    con.execute("CREATE SCHEMA IF NOT EXISTS reconciliation")
    summary: dict[str, dict[str, int]] = {}
    for name, sql in reconciliation_models().items():
        con.execute(f'CREATE OR REPLACE TABLE reconciliation."{name}" AS {sql}')
        summary[name] = dict(con.execute(
            f'SELECT finding, count(*) FROM reconciliation."{name}" GROUP BY 1 ORDER BY 1').fetchall())
    return summary


def mismatches(counts: dict[str, int]) -> int:
    return sum(n for finding, n in counts.items() if finding not in ("matched", "in_transit", "stock_matched"))


def build_reconciliation_assets(settings: Settings) -> dg.AssetsDefinition:
    models = reconciliation_models()
    core_keys = [dg.AssetKey(["core", t]) for t in CORE_TABLES]
    specs = [dg.AssetSpec(dg.AssetKey(["reconciliation", name]), group_name="reconciliation",
                          description=_description(sql), deps=core_keys, kinds={"duckdb", "sql"},
                          automation_condition=AFTER_UPSTREAM_UPDATES,
                          metadata={"table": f"reconciliation.{name}"})
             for name, sql in models.items()]
    checks = [dg.AssetCheckSpec("mismatches_within_threshold", asset=spec.key,
                                description=f"WARN from {settings.reconciliation_warn_at}, ERROR from "
                                            f"{settings.reconciliation_error_at} mismatches")
              for spec in specs]

    @dg.multi_asset(name="reconciliation", specs=specs, check_specs=checks, pool=WAREHOUSE_POOL)
    def reconciliation(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
        with warehouse.get(log=context.log).connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                summary = build_all_reconciliations(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            for name, counts in summary.items():
                key = dg.AssetKey(["reconciliation", name])
                examples = con.execute(
                    f"SELECT * FROM reconciliation.\"{name}\" WHERE finding NOT IN ('matched', 'in_transit', "
                    "'stock_matched') "
                    "LIMIT 10").df()
                table = "\n".join(f"| {finding} | {n} |" for finding, n in counts.items())
                yield dg.MaterializeResult(asset_key=key, metadata={
                    "dagster/row_count": sum(counts.values()),
                    "mismatches": mismatches(counts),
                    # one number per finding, which Dagster plots across runs (the asset's Plots tab): its trend
                    **{f"finding_{finding}": int(n) for finding, n in counts.items()},
                    "summary": dg.MetadataValue.md("| finding | rows |\n|---|---|\n" + (table or "| none | 0 |")),
                    "examples": dg.MetadataValue.md(examples.to_markdown(index=False) if len(examples) else "none"),
                })
                found = mismatches(counts)
                severity = (dg.AssetCheckSeverity.ERROR if found >= settings.reconciliation_error_at
                            else dg.AssetCheckSeverity.WARN)
                check = dg.AssetCheckResult(asset_key=key, check_name="mismatches_within_threshold",
                                            passed=found < settings.reconciliation_warn_at, severity=severity,
                                            metadata={"mismatches": found})
                alert_on_check_results([check])
                yield check

    return reconciliation
