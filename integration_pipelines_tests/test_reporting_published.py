"""Scenario 14: the consolidated reporting dataset, published atomically as Parquet files plus a summary."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import dagster as dg
import duckdb
import pytest

from integration_pipelines.assets import reporting
from integration_pipelines.assets.reporting import PUBLISHED_MODELS, build_reporting_asset, publication_day, publish
from integration_pipelines.resources import WarehouseResource

from .conftest import warehouse_rows
from .test_core_models import build, extract


@pytest.fixture
def built(settings, sandbox):
    extract(settings)  # stripe, hubspot, quickbooks: invoices in the books, payments, customers
    build(settings)
    return settings


def materialize(settings):
    return dg.materialize([build_reporting_asset()],
                          resources={"warehouse": WarehouseResource(database=settings.warehouse_database)})


def test_publishes_parquet_and_a_summary_that_match_the_warehouse(built):
    settings = built
    result = materialize(settings)
    day = publication_day(settings)
    folder = settings.data_dir / "published" / day.isoformat()
    assert sorted(p.name for p in folder.iterdir()) == sorted([*(f"{m}.parquet" for m in PUBLISHED_MODELS),
                                                               "summary.json"])
    assert [p.name for p in folder.parent.iterdir()] == [day.isoformat()]  # no temp folder left behind
    summary = json.loads((folder / "summary.json").read_text())
    metadata = result.asset_materializations_for_node("reporting__published")[0].metadata
    for model in PUBLISHED_MODELS:
        in_warehouse = warehouse_rows(settings, f"SELECT * FROM core.{model} ORDER BY ALL")
        published = duckdb.sql(f"SELECT * FROM '{folder / model}.parquet' ORDER BY ALL").fetchall()
        assert published == in_warehouse and len(published) > 0, model
        assert summary["row_counts"][model] == len(in_warehouse) == metadata[f"rows_{model}"].value
    revenue = dict(warehouse_rows(settings, "SELECT legal_entity, sum(revenue_usd_minor) FROM core.revenue_by_entity "
                                            "GROUP BY 1"))
    open_ = dict(warehouse_rows(settings, "SELECT legal_entity, open_usd_minor FROM core.receivables_by_entity"))
    entities = {e["legal_entity"]: e for e in summary["legal_entities"]}
    assert len(revenue) >= 2, "the world has several subsidiaries"
    for entity, minor in revenue.items():
        assert entities[entity]["revenue_usd_minor"] == minor
        assert entities[entity]["revenue_usd"] == round(minor / 100, 2)
        assert entities[entity]["open_receivables_usd_minor"] == open_.get(entity, 0)
    customers = warehouse_rows(settings, "SELECT count(*) FROM core.customers")[0][0]
    assert sum(e["customer_count"] for e in summary["legal_entities"]) == customers
    assert summary["totals"]["revenue_usd"] == round(sum(revenue.values()) / 100, 2)
    assert summary["date"] == day.isoformat() and summary["reporting_currency"] == "USD"
    assert datetime.fromisoformat(summary["generated_at"]).tzinfo is not None
    assert metadata["path"].value == str(folder)


def test_a_rerun_on_the_same_day_replaces_the_folder_and_a_failed_run_leaves_it_intact(built, monkeypatch):
    settings = built
    root = settings.data_dir / "published"
    day = date(2026, 3, 10)
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        first = publish(con, root, day, now=datetime(2026, 3, 10, 8, tzinfo=UTC))
    (root / day.isoformat() / "stray.txt").write_text("from the first publication")
    with duckdb.connect(settings.warehouse_database) as con:
        con.execute("DELETE FROM core.customers WHERE golden_id IN (SELECT golden_id FROM core.customers LIMIT 2)")
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        second = publish(con, root, day, now=datetime(2026, 3, 10, 9, tzinfo=UTC))
    folder = root / day.isoformat()
    assert second["row_counts"]["customers"] == first["row_counts"]["customers"] - 2
    assert not (folder / "stray.txt").exists()  # the whole folder was replaced, not merged
    assert json.loads((folder / "summary.json").read_text())["generated_at"] == "2026-03-10T09:00:00+00:00"
    assert duckdb.sql(f"SELECT count(*) FROM '{folder}/customers.parquet'").fetchall()[0][0] == \
        second["row_counts"]["customers"]
    assert [p.name for p in root.iterdir()] == [day.isoformat()]

    # the fallback without renameat2 replaces the folder too
    monkeypatch.setattr(reporting, "_exchange", lambda a, b: False)
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        publish(con, root, day, now=datetime(2026, 3, 10, 10, tzinfo=UTC))
    assert json.loads((folder / "summary.json").read_text())["generated_at"] == "2026-03-10T10:00:00+00:00"
    assert [p.name for p in root.iterdir()] == [day.isoformat()]

    # a run that fails half-way leaves the previous publication as it was, and no temp folder
    def broken(con):
        raise RuntimeError("disk full")

    monkeypatch.setattr(reporting, "_entity_totals", broken)
    with duckdb.connect(settings.warehouse_database, read_only=True) as con, pytest.raises(RuntimeError):
        publish(con, root, day, now=datetime(2026, 3, 10, 11, tzinfo=UTC))
    assert json.loads((folder / "summary.json").read_text())["generated_at"] == "2026-03-10T10:00:00+00:00"
    assert [p.name for p in root.iterdir()] == [day.isoformat()]
