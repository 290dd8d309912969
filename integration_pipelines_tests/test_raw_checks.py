"""Raw-level checks on the extract assets (issue 19): a clean load passes `unique_key` and
`row_count_not_dropped`; a duplicate `_pk` planted in the raw table fails `unique_key` (ERROR); a table that lost
rows since the previous load warns. Plus the freshness policy and owners the assets carry, from settings."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import duckdb
import pytest

from integration_pipelines.assets.extract import build_extract_asset
from integration_pipelines.assets.raw_checks import ROW_COUNT_NOT_DROPPED, UNIQUE_KEY
from integration_pipelines.connectors.errors import ConfigurationError
from integration_pipelines.connectors.registry import get_system
from integration_pipelines.resources import WarehouseResource
from integration_pipelines.settings import Settings

from .conftest import PARTITIONS

SYSTEM, STREAM = "stripe", "customers"
PARTITION = PARTITIONS[0]


def _materialize(settings: Settings, instance: dg.DagsterInstance, partition: str = PARTITION
                 ) -> dict[str, dg.AssetCheckEvaluation]:
    """One load of the stream into the test's warehouse, recorded in `instance` (the previous row count lives in
    the instance's last materialization, as in a deployment)."""
    spec = get_system(SYSTEM)
    asset = build_extract_asset(spec, spec.stream(STREAM), settings)
    result = dg.materialize([asset], instance=instance, partition_key=partition,
                            resources={"warehouse": WarehouseResource(database=settings.warehouse_database)})
    assert result.success
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _sql(settings: Settings, sql: str) -> None:
    with duckdb.connect(settings.warehouse_database) as con:
        con.execute(sql)


def test_a_clean_load_passes_both_checks(settings, sandbox):
    with dg.instance_for_test() as instance:
        first = _materialize(settings, instance)
        second = _materialize(settings, instance)
    assert set(first) == {UNIQUE_KEY, ROW_COUNT_NOT_DROPPED}
    assert all(e.passed for e in (*first.values(), *second.values()))
    rows = second[ROW_COUNT_NOT_DROPPED].metadata["rows"].value
    assert rows > 0 and second[ROW_COUNT_NOT_DROPPED].metadata["previous_rows"].value == rows
    assert "previous_rows" not in first[ROW_COUNT_NOT_DROPPED].metadata  # nothing to compare on a first load


def test_a_planted_duplicate_key_fails_unique_key_with_error(settings, sandbox):
    with dg.instance_for_test() as instance:
        _materialize(settings, instance)
        # a hand fix that re-inserted a row: the load upserts by `_pk` and never writes a second one itself
        _sql(settings, f"INSERT INTO raw_{SYSTEM}.{STREAM} SELECT * FROM raw_{SYSTEM}.{STREAM} ORDER BY _pk LIMIT 1")
        checks = _materialize(settings, instance)
    unique = checks[UNIQUE_KEY]
    assert not unique.passed and unique.severity == dg.AssetCheckSeverity.ERROR
    assert unique.metadata["duplicate_rows"].value == 1
    assert unique.metadata["duplicate_keys_sample"].value  # names the key to look at
    assert checks[ROW_COUNT_NOT_DROPPED].passed


def test_a_table_that_lost_rows_warns(settings, sandbox):
    with dg.instance_for_test() as instance:
        _materialize(settings, instance, PARTITIONS[0])
        _materialize(settings, instance, PARTITIONS[1])
        # the rows were removed outside the load (a hand clean-up); re-reading one day brings back that day only
        _sql(settings, f"DELETE FROM raw_{SYSTEM}.{STREAM}")
        checks = _materialize(settings, instance, PARTITIONS[1])
    drop = checks[ROW_COUNT_NOT_DROPPED]
    previous, rows = drop.metadata["previous_rows"].value, drop.metadata["rows"].value
    assert 0 < rows < previous * 0.9
    assert not drop.passed and drop.severity == dg.AssetCheckSeverity.WARN
    assert "IP_ROW_COUNT_DROP_SHARE" in drop.description
    assert checks[UNIQUE_KEY].passed


def test_freshness_and_owner_come_from_settings(settings, monkeypatch):
    monkeypatch.setenv("IP_FRESHNESS_HOURS", "30")
    monkeypatch.setenv("IP_FRESHNESS_FAIL_HOURS", "60")
    monkeypatch.setenv("IP_DEFAULT_OWNER", "team:integrations")
    monkeypatch.setenv("STRIPE_OWNER", "payments-data@example.com")
    configured = Settings()
    for system, owner in (("stripe", "payments-data@example.com"), ("hubspot", "team:integrations")):
        spec = get_system(system)
        asset = build_extract_asset(spec, spec.streams[0], configured)
        key = dg.AssetKey([system, spec.streams[0].name])
        assert asset.specs_by_key[key].owners == [owner]
        policy = asset.specs_by_key[key].freshness_policy
        assert policy.warn_window.to_timedelta() == timedelta(hours=30)
        assert policy.fail_window.to_timedelta() == timedelta(hours=60)


def test_every_asset_has_an_owner_a_sync_its_target_systems(settings, monkeypatch):
    """Not only the extracts: the sync into HubSpot is owned by HubSpot's owner, the one into QuickBooks (no owner of
    its own) and core, reconciliation, ROI, reporting and webhook assets by the default owner; none is left out."""
    from integration_pipelines.definitions import build_definitions

    monkeypatch.setenv("IP_DEFAULT_OWNER", "team:integrations")
    monkeypatch.setenv("HUBSPOT_OWNER", "crm-admins@example.com")
    graph = build_definitions(Settings()).resolve_asset_graph()
    owners = {key.to_user_string(): graph.get(key).owners for key in graph.get_all_asset_keys()}
    assert owners["sync/form_leads_to_hubspot"] == owners["hubspot/contacts"] == ["crm-admins@example.com"]
    for key in ("sync/payments_to_quickbooks", "core/customers", "reconciliation/deals_vs_invoices", "roi/report",
                "reporting/published", "webhooks/events", "stripe/charges"):
        assert owners[key] == ["team:integrations"], key
    assert [key for key, names in owners.items() if not names] == []


def test_an_owner_dagster_refuses_is_one_paragraph_naming_the_variable(settings, monkeypatch):
    monkeypatch.setenv("STRIPE_OWNER", "payments team")
    spec = get_system("stripe")
    with pytest.raises(ConfigurationError) as info:
        build_extract_asset(spec, spec.streams[0], Settings())
    message = str(info.value)
    assert "STRIPE_OWNER='payments team'" in message and "team:" in message and "\n" not in message


def test_freshness_windows_out_of_order_name_both_variables(settings, monkeypatch):
    monkeypatch.setenv("IP_FRESHNESS_HOURS", "48")
    monkeypatch.setenv("IP_FRESHNESS_FAIL_HOURS", "24")
    with pytest.raises(ValueError, match=r"IP_FRESHNESS_FAIL_HOURS .* IP_FRESHNESS_HOURS"):
        Settings()


def test_partitioned_streams_pass_across_partitions(settings, sandbox):
    """A daily-partitioned stream: every partition's load adds to one table, so no partition looks like a drop."""
    spec = get_system("stripe")
    stream = next(s for s in spec.streams if s.partitioned == "daily")
    asset = build_extract_asset(spec, stream, settings)
    with dg.instance_for_test() as instance:
        for partition in PARTITIONS:
            result = dg.materialize([asset], instance=instance, partition_key=partition, resources={
                "warehouse": WarehouseResource(database=settings.warehouse_database)})
            assert all(e.passed for e in result.get_asset_check_evaluations()), partition
