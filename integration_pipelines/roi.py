"""What the automation is worth: records the syncs pushed, priced as staff time and as iPaaS tasks.

Every record a sync creates, updates or deletes is one operation a person would otherwise key in (minutes per
record are declared on each SyncSpec) and one "task" on a per-task iPaaS plan. The default price table is
illustrative, shaped like public per-task plans (a monthly price per volume tier); set IP_ROI_IPAAS_TIERS to
your own quote. Payback = build cost / (monthly labour saved - monthly running cost).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .syncs.registry import discover_syncs

DEFAULT_TIERS = ((750, 29.99), (2_000, 73.50), (5_000, 133.50), (10_000, 193.50), (50_000, 598.50),
                 (100_000, 1_098.50))


class RoiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IP_ROI_", env_file=".env", extra="ignore")

    hourly_rate: float = Field(default=35.0, ge=0, description="loaded cost of an hour of staff time")
    currency: str = "USD"
    build_cost: float = Field(default=0.0, ge=0, description="one-off cost of building these pipelines")
    monthly_run_cost: float = Field(default=20.0, ge=0, description="hosting and upkeep per month")
    ipaas_tiers: tuple[tuple[int, float], ...] = Field(
        default=DEFAULT_TIERS, description='JSON [[tasks per month, monthly price], ...], ascending')

    @field_validator("ipaas_tiers", mode="before")
    @classmethod
    def _parse(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value


def ipaas_monthly_cost(tasks: int, tiers: tuple[tuple[int, float], ...]) -> float:
    """Price of the smallest tier that covers `tasks`; beyond the top tier, its per-task rate."""
    for limit, price in tiers:
        if tasks <= limit:
            return 0.0 if tasks == 0 else price
    limit, price = tiers[-1]
    return round(price * tasks / limit, 2)


@dataclass(frozen=True)
class RoiRow:
    month: str
    sync_name: str
    operations: int
    minutes_saved: float
    labour_saved: float


def monthly_operations(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int]]:
    """Read-only: no sync has run yet when there is no sync.runs table, and that is an empty report."""
    if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'sync' "
                       "AND table_name = 'runs'").fetchone()[0]:
        return []
    return con.execute("""
        SELECT strftime(finished_at, '%Y-%m') AS month, sync_name, CAST(sum(created + updated + deleted) AS BIGINT)
        FROM sync.runs WHERE NOT dry_run GROUP BY ALL HAVING sum(created + updated + deleted) > 0
        ORDER BY 1, 2""").fetchall()


def compute(con: duckdb.DuckDBPyConnection, config: RoiSettings) -> tuple[list[RoiRow], list[dict[str, object]]]:
    minutes = {spec.name: spec.manual_minutes_per_record for spec in discover_syncs()}
    rows = [RoiRow(month, name, ops, ops * minutes.get(name, 3.0),
                   round(ops * minutes.get(name, 3.0) / 60 * config.hourly_rate, 2))
            for month, name, ops in monthly_operations(con)]
    months: dict[str, dict[str, object]] = {}
    for row in rows:
        entry = months.setdefault(row.month, {"month": row.month, "operations": 0, "hours_saved": 0.0,
                                              "labour_saved": 0.0})
        entry["operations"] = int(entry["operations"]) + row.operations  # type: ignore[arg-type]
        entry["hours_saved"] = round(float(entry["hours_saved"]) + row.minutes_saved / 60, 2)  # type: ignore[arg-type]
        entry["labour_saved"] = round(float(entry["labour_saved"]) + row.labour_saved, 2)  # type: ignore[arg-type]
    summary = []
    for entry in months.values():
        ipaas = ipaas_monthly_cost(int(entry["operations"]), config.ipaas_tiers)  # type: ignore[arg-type]
        net = round(float(entry["labour_saved"]) - config.monthly_run_cost, 2)  # type: ignore[arg-type]
        summary.append({**entry, "ipaas_cost_avoided": ipaas, "run_cost": config.monthly_run_cost,
                        "net_saving_vs_manual": net,
                        "saving_vs_ipaas": round(ipaas - config.monthly_run_cost, 2),
                        "payback_months": round(config.build_cost / net, 1) if net > 0 and config.build_cost
                        else None})
    return rows, summary


def write_tables(con: duckdb.DuckDBPyConnection, rows: list[RoiRow], summary: list[dict[str, object]]) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute("CREATE OR REPLACE TABLE ops.roi_by_scenario (month VARCHAR, sync_name VARCHAR, operations BIGINT, "
                "minutes_saved DOUBLE, labour_saved DOUBLE)")
    if rows:
        con.executemany("INSERT INTO ops.roi_by_scenario VALUES (?, ?, ?, ?, ?)",
                        [(r.month, r.sync_name, r.operations, r.minutes_saved, r.labour_saved) for r in rows])
    con.execute("CREATE OR REPLACE TABLE ops.roi_monthly (month VARCHAR, operations BIGINT, hours_saved DOUBLE, "
                "labour_saved DOUBLE, ipaas_cost_avoided DOUBLE, run_cost DOUBLE, net_saving_vs_manual DOUBLE, "
                "saving_vs_ipaas DOUBLE, payback_months DOUBLE)")
    if summary:
        columns = ["month", "operations", "hours_saved", "labour_saved", "ipaas_cost_avoided", "run_cost",
                   "net_saving_vs_manual", "saving_vs_ipaas", "payback_months"]
        con.executemany("INSERT INTO ops.roi_monthly VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [[s[c] for c in columns] for s in summary])


def bar_chart(summary: list[dict[str, object]], width: int = 30) -> str:
    """A chart that renders anywhere Markdown does (the Dagster UI, a terminal)."""
    if not summary:
        return "no sync activity yet"
    top = max(float(s["labour_saved"]) for s in summary) or 1.0  # type: ignore[arg-type]
    lines = [f"{s['month']} {'█' * max(1, round(float(s['labour_saved']) / top * width))} "  # type: ignore[arg-type]
             f"{s['labour_saved']:.2f} saved" for s in summary]
    return "```\n" + "\n".join(lines) + "\n```"
