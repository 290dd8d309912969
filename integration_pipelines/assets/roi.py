"""`roi/report`: the ROI of the automation, refreshed after the syncs run.

It depends on every sync asset so that it runs after them in the same run (and counts tonight's operations) and
so that the automation condition refreshes it after a sync. It reads only `sync.runs`, which every sync run
writes whatever became of its records, so it must not be skipped because a record failed: record failures do not
fail a sync step (they are reported by each sync's non-blocking `failing_records` asset check, ERROR severity;
see assets/syncs.py). Only systemic trouble (a refused credential, an unreachable target, new failures above a
spec's error threshold) fails a sync step, and then that run's ROI waits for the next run.
"""

from collections.abc import Sequence

import dagster as dg

from ..resources import WarehouseResource
from ..roi import RoiSettings, bar_chart, compute, write_tables
from ..syncs.spec import SyncSpec
from .automation import AFTER_UPSTREAM_UPDATES
from .extract import WAREHOUSE_POOL


def build_roi_asset(syncs: Sequence[SyncSpec]) -> dg.AssetsDefinition:
    return dg.asset(
        key=dg.AssetKey(["roi", "report"]), group_name="roi", pool=WAREHOUSE_POOL, kinds={"duckdb"},
        deps=[dg.AssetKey(["sync", s.name]) for s in syncs],
        automation_condition=AFTER_UPSTREAM_UPDATES,
        description="Operations automated per scenario per month, priced as staff time and as iPaaS tasks "
                    "(ops.roi_by_scenario, ops.roi_monthly).",
    )(roi_report)


def roi_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    config = RoiSettings()
    with warehouse.get(log=context.log).connect() as con:
        con.execute("BEGIN TRANSACTION")
        rows, summary = compute(con, config)
        write_tables(con, rows, summary)
        con.execute("COMMIT")
    header = "| month | operations | hours saved | labour saved | iPaaS cost avoided | net vs manual |"
    table = "\n".join([header, "|---|---|---|---|---|---|"] + [
        f"| {s['month']} | {s['operations']} | {s['hours_saved']} | {s['labour_saved']} | "
        f"{s['ipaas_cost_avoided']} | {s['net_saving_vs_manual']} |" for s in summary])
    return dg.MaterializeResult(metadata={
        "months": len(summary),
        "operations": sum(int(s["operations"]) for s in summary),  # type: ignore[arg-type]
        # numbers Dagster plots across materializations (the asset's Plots tab): the trend over time
        "hours_saved": round(sum(float(s["hours_saved"]) for s in summary), 2),  # type: ignore[arg-type]
        "net_saving_vs_manual": round(sum(float(s["net_saving_vs_manual"]) for s in summary), 2),  # type: ignore[arg-type]
        "report": dg.MetadataValue.md(table),
        "chart": dg.MetadataValue.md(bar_chart(summary)),
        "currency": config.currency,
    })
