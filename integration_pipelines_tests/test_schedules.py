"""The nightly schedule asks for the right partition at every tick, across DST changes, and its job runs."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from integration_pipelines.definitions import build_definitions
from integration_pipelines.schedules import partition_for
from integration_pipelines.settings import Settings

from .conftest import PARTITIONS, loaded_keys, warehouse_rows


@pytest.mark.parametrize(
    ("local_tick", "expected"),
    [
        (datetime(2026, 3, 10, 2, 0, tzinfo=ZoneInfo("Europe/Berlin")), "2026-03-09"),
        # spring forward in Berlin: 02:00 does not exist on 2026-03-29, the tick fires at 03:00 CEST
        (datetime(2026, 3, 29, 3, 0, tzinfo=ZoneInfo("Europe/Berlin")), "2026-03-28"),
        # fall back: 02:00 happens twice on 2026-10-25; either instant belongs to the 25th
        (datetime(2026, 10, 25, 2, 0, fold=0, tzinfo=ZoneInfo("Europe/Berlin")), "2026-10-24"),
        (datetime(2026, 10, 25, 2, 0, fold=1, tzinfo=ZoneInfo("Europe/Berlin")), "2026-10-24"),
        # New York at 02:00 is already the next day in UTC: the business's own yesterday is what counts
        (datetime(2026, 11, 2, 2, 0, tzinfo=ZoneInfo("America/New_York")), "2026-11-01"),
    ],
)
def test_partition_is_yesterday_in_the_business_timezone(local_tick, expected):
    assert partition_for(local_tick.astimezone(UTC), str(local_tick.tzinfo)) == expected


def test_schedule_evaluates_to_one_stable_run_request(settings, monkeypatch):
    monkeypatch.setenv("IP_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("IP_NIGHTLY_CRON", "30 1 * * *")
    defs = build_definitions(Settings())
    schedule = defs.resolve_schedule_def("nightly_sync_schedule")
    assert schedule.cron_schedule == "30 1 * * *" and schedule.execution_timezone == "Europe/Berlin"
    tick = datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        request = schedule(context)
    assert (request.partition_key, request.run_key) == ("2026-03-28", "nightly-2026-03-28")


def test_nightly_job_syncs_a_day_end_to_end(settings, sandbox, monkeypatch):
    monkeypatch.setenv("IP_ENABLED_SYSTEMS", "stripe,hubspot,quickbooks")
    defs = build_definitions(Settings())
    job = defs.resolve_job_def("nightly_sync")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(partition_key=PARTITIONS[-1], instance=instance)
    assert result.success
    day_start = int(datetime.fromisoformat(PARTITIONS[-1]).replace(tzinfo=UTC).timestamp())
    truth = sorted(o["id"] for o in sandbox.emulator("stripe").dump("charges") if o["created"] >= day_start)
    assert loaded_keys(settings, "stripe", "charges") == truth
    assert warehouse_rows(settings, "SELECT count(*) FROM core.customers")[0][0] > 0
    assert warehouse_rows(settings, "SELECT count(DISTINCT sync_name) FROM sync.runs")[0][0] >= 2


def test_a_run_over_a_range_of_days_reads_each_stream_once_over_the_whole_range(settings, sandbox, monkeypatch):
    """The demo's first start: one nightly run over several days (Dagster's partition-range tags) reads every
    day of the range, as a run per day would, with one request window per stream."""
    monkeypatch.setenv("IP_ENABLED_SYSTEMS", "stripe")
    monkeypatch.setenv("IP_NIGHTLY_REREAD_DAYS", "0")
    defs = build_definitions(Settings())
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("nightly_sync").execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": PARTITIONS[0],
            "dagster/asset_partition_range_end": PARTITIONS[-1]})
    assert result.success
    first = int(datetime.fromisoformat(PARTITIONS[0]).replace(tzinfo=UTC).timestamp())
    end = int(datetime.fromisoformat(PARTITIONS[-1]).replace(tzinfo=UTC).timestamp()) + 86400
    truth = sorted(o["id"] for o in sandbox.emulator("stripe").dump("charges") if first <= o["created"] < end)
    assert len(PARTITIONS) > 1 and len(truth) > 0
    assert loaded_keys(settings, "stripe", "charges") == truth
    states = warehouse_rows(settings, "SELECT state_key FROM ops.stream_state WHERE stream = 'charges'")
    assert states == [(f"{PARTITIONS[0]}..{PARTITIONS[-1]}",)]
