"""Scenario 14: `reporting/published`, the consolidated reporting dataset across subsidiaries, as files.

Every run writes `<IP_DATA_DIR>/published/<yyyy-mm-dd>/` (the date in `IP_TIMEZONE`): one Parquet file per
published model (core.revenue_by_entity, core.receivables_by_entity, core.customers) and `summary.json` (totals
per legal entity in USD, row counts, generated_at). The three models are read in one read-only transaction, so
the files describe one consistent state of the warehouse.

Atomic publication: everything is written to a hidden temp folder next to the target and only then renamed into
place, so a reader (a BI tool, a file sync to the subsidiaries) never sees a half-written day. A rerun on the same
day swaps the new folder with the old one in one `renameat2(RENAME_EXCHANGE)` on Linux, then deletes the old one;
where that call is unavailable it falls back to two renames (old out of the way, new in), leaving a gap of
microseconds in which the day's folder is absent, never one in which it is incomplete. A failed run deletes its
temp folder and leaves the previous publication untouched.

It depends on the core models only, never on the sync assets: what the books and the CRM received is not part of
the published dataset, so a sync that fails (a refused record, or a target that is down) never skips it. Record
failures do not even fail a sync step any more (assets/syncs.py).
"""

import ctypes
import json
import os
import shutil
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb

from ..resources import WarehouseResource
from ..settings import Settings
from ..warehouse.duckdb import quote_literal
from .automation import AFTER_UPSTREAM_UPDATES
from .extract import WAREHOUSE_POOL

PUBLISHED_MODELS = ("revenue_by_entity", "receivables_by_entity", "customers")
SUMMARY_FILE = "summary.json"

_TOTALS_SQL = """
    WITH revenue AS (
        SELECT legal_entity, sum(revenue_usd_minor) AS revenue_usd_minor, sum(invoice_count) AS invoice_count,
               sum(invoices_without_rate) AS invoices_without_rate
        FROM core.revenue_by_entity GROUP BY 1
    ), receivables AS (
        SELECT legal_entity, sum(open_usd_minor) AS open_usd_minor, sum(open_invoice_count) AS open_invoice_count,
               sum(overdue_invoice_count) AS overdue_invoice_count
        FROM core.receivables_by_entity GROUP BY 1
    ), customers AS (
        SELECT coalesce(le.legal_entity, 'Unassigned') AS legal_entity, count(*) AS customer_count
        FROM core.customers AS c LEFT JOIN ref.legal_entities AS le ON le.country = c.country GROUP BY 1
    )
    SELECT legal_entity,
           coalesce(r.revenue_usd_minor, 0) AS revenue_usd_minor,
           coalesce(r.invoice_count, 0) AS invoice_count,
           coalesce(r.invoices_without_rate, 0) AS invoices_without_rate,
           coalesce(o.open_usd_minor, 0) AS open_receivables_usd_minor,
           coalesce(o.open_invoice_count, 0) AS open_invoice_count,
           coalesce(o.overdue_invoice_count, 0) AS overdue_invoice_count,
           coalesce(c.customer_count, 0) AS customer_count
    FROM revenue AS r
    FULL JOIN receivables AS o USING (legal_entity)
    FULL JOIN customers AS c USING (legal_entity)
    ORDER BY legal_entity
"""


def publication_day(settings: Settings, now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(ZoneInfo(settings.timezone)).date()


def _entity_totals(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    cursor = con.execute(_TOTALS_SQL)
    names = [d[0] for d in cursor.description]
    out = []
    for row in cursor.fetchall():
        item = {name: (int(value) if name != "legal_entity" else value) for name, value in zip(names, row, strict=True)}
        item["revenue_usd"] = round(item["revenue_usd_minor"] / 100, 2)
        item["open_receivables_usd"] = round(item["open_receivables_usd_minor"] / 100, 2)
        out.append(item)
    return out


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the platform cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _swap_into_place(staged: Path, final: Path) -> None:
    if not final.exists():
        os.rename(staged, final)  # atomic on one filesystem; staged is a sibling of final
        return
    if _exchange(staged, final):
        shutil.rmtree(staged)  # staged now holds the previous publication
        return
    retired = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(final, retired)
    os.rename(staged, final)
    shutil.rmtree(retired, ignore_errors=True)


def publish(con: duckdb.DuckDBPyConnection, root: Path, day: date, *, now: datetime | None = None
            ) -> dict[str, Any]:
    """Write the day's dataset under `root/<day>/` atomically and return the summary written with it."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / day.isoformat()
    staged = root / f".{day.isoformat()}.tmp-{uuid.uuid4().hex[:8]}"
    staged.mkdir()
    try:
        con.execute("BEGIN TRANSACTION")  # one snapshot for every file and the summary
        try:
            row_counts: dict[str, int] = {}
            for model in PUBLISHED_MODELS:
                target = staged / f"{model}.parquet"
                con.execute(f"COPY (SELECT * FROM core.{model}) TO {quote_literal(str(target))} "
                            "(FORMAT parquet, COMPRESSION zstd)")
                row_counts[model] = int(con.execute(f"SELECT count(*) FROM core.{model}").fetchone()[0])
            entities = _entity_totals(con)
        finally:
            con.execute("ROLLBACK")
        summary = {
            "date": day.isoformat(),
            "generated_at": (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds"),
            "reporting_currency": "USD",
            "row_counts": row_counts,
            "files": [f"{m}.parquet" for m in PUBLISHED_MODELS],
            "legal_entities": entities,
            "totals": {
                "revenue_usd": round(sum(e["revenue_usd_minor"] for e in entities) / 100, 2),
                "open_receivables_usd": round(sum(e["open_receivables_usd_minor"] for e in entities) / 100, 2),
                "invoices_without_rate": sum(e["invoices_without_rate"] for e in entities),
            },
        }
        with open(staged / SUMMARY_FILE, "w", encoding="utf-8") as handle:
            json.dump(summary, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        _swap_into_place(staged, final)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return summary


def build_reporting_asset() -> dg.AssetsDefinition:
    @dg.asset(
        key=dg.AssetKey(["reporting", "published"]), group_name="reporting", pool=WAREHOUSE_POOL,
        deps=[dg.AssetKey(["core", m]) for m in PUBLISHED_MODELS], kinds={"parquet", "duckdb"},
        automation_condition=AFTER_UPSTREAM_UPDATES,
        description="The consolidated reporting dataset across subsidiaries: Parquet files of revenue and "
                    "receivables per legal entity (USD) and golden customers, plus summary.json, published "
                    "atomically to <IP_DATA_DIR>/published/<yyyy-mm-dd>/.",
    )
    def reporting_published(context: dg.AssetExecutionContext, warehouse: WarehouseResource
                            ) -> dg.MaterializeResult:
        settings = Settings()
        day = publication_day(settings)
        root = settings.data_dir / "published"
        with warehouse.get(log=context.log).connect(read_only=True) as con:
            summary = publish(con, root, day)
        folder = root / day.isoformat()
        context.log.info(f"published {summary['row_counts']} to {folder}")
        table = "\n".join(["| legal entity | revenue (USD) | open receivables (USD) | customers |", "|---|---|---|---|"]
                          + [f"| {e['legal_entity']} | {e['revenue_usd']:,.2f} | {e['open_receivables_usd']:,.2f} | "
                             f"{e['customer_count']} |" for e in summary["legal_entities"]])
        return dg.MaterializeResult(metadata={
            "path": dg.MetadataValue.path(str(folder)),
            "date": summary["date"],
            **{f"rows_{model}": count for model, count in summary["row_counts"].items()},
            "revenue_usd": summary["totals"]["revenue_usd"],
            "open_receivables_usd": summary["totals"]["open_receivables_usd"],
            "by_legal_entity": dg.MetadataValue.md(table),
        })

    return reporting_published
