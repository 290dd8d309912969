"""ROI numbers against a hand-computed example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import dagster as dg
import duckdb
import pytest

from integration_pipelines.assets.roi import build_roi_asset
from integration_pipelines.resources import WarehouseResource
from integration_pipelines.roi import RoiSettings, compute, ipaas_monthly_cost
from integration_pipelines.syncs.ledger import ensure_ledger
from integration_pipelines.syncs.registry import discover_syncs, get_sync

from .cli_in_process import run_in_process


def seed_runs(path: str) -> None:
    with duckdb.connect(path) as con:
        ensure_ledger(con)
        rows = [
            # run, sync, finished, dry_run, created, updated, deleted
            ("r1", "payments_to_quickbooks", datetime(2026, 3, 5, tzinfo=UTC), False, 300, 0, 0),
            ("r2", "payments_to_quickbooks", datetime(2026, 3, 20, tzinfo=UTC), False, 200, 0, 0),
            ("r3", "payment_status_to_hubspot", datetime(2026, 3, 21, tzinfo=UTC), False, 100, 400, 0),
            ("r4", "payments_to_quickbooks", datetime(2026, 3, 22, tzinfo=UTC), True, 999, 0, 0),  # dry run
            ("r5", "payments_to_quickbooks", datetime(2026, 4, 2, tzinfo=UTC), False, 60, 0, 0),
        ]
        for run_id, name, finished, dry, created, updated, deleted in rows:
            con.execute("INSERT INTO sync.runs (run_id, sync_name, target, started_at, finished_at, dry_run, "
                        "planned_creates, planned_updates, planned_deletes, unchanged, waiting, created, updated, "
                        "deleted, failed) VALUES (?, ?, 'x', ?, ?, ?, 0, 0, 0, 0, 0, ?, ?, ?, 0)",
                        [run_id, name, finished, finished, dry, created, updated, deleted])


def test_roi_matches_a_hand_computed_example(tmp_path, monkeypatch):
    path = str(tmp_path / "w.duckdb")
    seed_runs(path)
    config = RoiSettings(hourly_rate=30.0, monthly_run_cost=20.0, build_cost=1200.0,
                         ipaas_tiers=((750, 29.99), (2000, 73.5)))
    with duckdb.connect(path) as con:
        rows, summary = compute(con, config)
    payments_min = get_sync("payments_to_quickbooks").manual_minutes_per_record  # 4.0
    status_min = get_sync("payment_status_to_hubspot").manual_minutes_per_record  # 1.5
    assert (payments_min, status_min) == (4.0, 1.5)
    march, april = summary
    # March: 500 payments x 4 min = 2000 min; 500 status updates x 1.5 min = 750 min → 2750 min = 45.83 h
    assert march["operations"] == 1000 and march["hours_saved"] == pytest.approx(45.83, abs=0.01)
    assert march["labour_saved"] == pytest.approx(2750 / 60 * 30, abs=0.01)  # 1375.00
    assert march["ipaas_cost_avoided"] == 73.5  # 1000 tasks fall in the 2,000 tier
    assert march["net_saving_vs_manual"] == pytest.approx(1355.0)
    assert march["payback_months"] == pytest.approx(0.9)  # 1200 / 1355
    # April: 60 x 4 min = 240 min = 4 h = 120.00; 60 tasks → the 750 tier
    assert (april["operations"], april["labour_saved"], april["ipaas_cost_avoided"]) == (60, 120.0, 29.99)
    assert [r.sync_name for r in rows if r.month == "2026-03"] == ["payment_status_to_hubspot",
                                                                    "payments_to_quickbooks"]


def test_ipaas_price_beyond_the_top_tier_scales_per_task():
    tiers = ((750, 29.99), (2000, 73.5))
    assert ipaas_monthly_cost(0, tiers) == 0.0
    assert ipaas_monthly_cost(750, tiers) == 29.99
    assert ipaas_monthly_cost(751, tiers) == 73.5
    assert ipaas_monthly_cost(4000, tiers) == 147.0


def test_roi_asset_and_tables(settings, tmp_path):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    seed_runs(settings.warehouse_database)
    result = dg.materialize([build_roi_asset(discover_syncs())],
                            resources={"warehouse": WarehouseResource(database=settings.warehouse_database)})
    metadata = result.asset_materializations_for_node("roi__report")[0].metadata
    assert metadata["operations"].value == 1060 and "█" in metadata["chart"].value
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ops.roi_monthly").fetchone()[0] == 2
        hours, net = con.execute("SELECT sum(hours_saved), sum(net_saving_vs_manual) FROM ops.roi_monthly").fetchone()
    # plotted across runs by Dagster: the totals as numbers, March's 45.83 hours among them
    assert metadata["hours_saved"].value == pytest.approx(float(hours), abs=0.01) and float(hours) > 45.83
    assert metadata["net_saving_vs_manual"].value == pytest.approx(float(net), abs=0.01)


def test_roi_json_lists_each_month_with_hand_computed_numbers(tmp_path, monkeypatch):
    """`roi --json`, as `sync list --json` lists syncs: one record per month, every ops.roi_monthly column. Once
    through the real entry point, once in this process."""
    warehouse = str(tmp_path / "w.duckdb")
    seed_runs(warehouse)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for name in [n for n in os.environ if n.startswith("IP_")]:
        monkeypatch.delenv(name)
    env = {"IP_WAREHOUSE": warehouse, "IP_ROI_HOURLY_RATE": "30", "IP_ROI_MONTHLY_RUN_COST": "20",
           "IP_ROI_BUILD_COST": "1200", "IP_ROI_IPAAS_TIERS": "[[750, 29.99], [2000, 73.5]]"}
    expected = [
        # March: 500 payments x 4 min + 500 status updates x 1.5 min = 2750 min = 45.83 h, x 30 = 1375.00;
        # 1000 tasks → the 2,000 tier (73.50); net 1375 - 20 = 1355; 73.50 - 20 = 53.50; payback 1200 / 1355
        {"month": "2026-03", "operations": 1000, "hours_saved": 45.83, "labour_saved": 1375.0,
         "ipaas_cost_avoided": 73.5, "run_cost": 20.0, "net_saving_vs_manual": 1355.0, "saving_vs_ipaas": 53.5,
         "payback_months": 0.9},
        # April: 60 x 4 min = 4 h = 120.00; 60 tasks → the 750 tier; payback 1200 / 100
        {"month": "2026-04", "operations": 60, "hours_saved": 4.0, "labour_saved": 120.0,
         "ipaas_cost_avoided": 29.99, "run_cost": 20.0, "net_saving_vs_manual": 100.0, "saving_vs_ipaas": 9.99,
         "payback_months": 12.0},
    ]
    real = subprocess.run([sys.executable, "-m", "integration_pipelines.cli", "roi", "--json"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})
    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout) == expected
    in_process = run_in_process(["roi", "--json"], monkeypatch, **env)
    assert in_process.returncode == 0, in_process.stderr
    assert json.loads(in_process.stdout) == expected
    table = run_in_process(["roi"], monkeypatch, **env)
    assert "2026-03" in table.stdout and "1355.0" in table.stdout and "█" in table.stdout  # the text is unchanged
