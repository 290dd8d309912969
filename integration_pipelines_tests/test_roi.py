"""ROI numbers against a hand-computed example."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import duckdb
import pytest

from integration_pipelines.assets.roi import build_roi_asset
from integration_pipelines.resources import WarehouseResource
from integration_pipelines.roi import RoiSettings, compute, ipaas_monthly_cost
from integration_pipelines.syncs.ledger import ensure_ledger
from integration_pipelines.syncs.registry import discover_syncs, get_sync


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
