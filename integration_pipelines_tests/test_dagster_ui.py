"""Like a user in the UI: with `dagster dev` running, launch a run and a three-partition backfill through /graphql
and see both succeed. The boot (and stopping every process it started) is the shared `dagster_dev_stack`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from integration_pipelines.sandbox.server import SandboxServer
from integration_pipelines.warehouse.query import run_query

from .conftest import PARTITIONS
from .dagster_dev import DevStack

pytest_plugins = ["integration_pipelines_tests.dagster_dev"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),  # a bound on a hang of a whole dagster dev, not a speed claim
              pytest.mark.xdist_group("stack")]  # meant to share one worker: see the Makefile


def _day_bounds(partitions: list[str]) -> tuple[int, int]:
    first = datetime.fromisoformat(partitions[0]).replace(tzinfo=UTC)
    last = datetime.fromisoformat(partitions[-1]).replace(tzinfo=UTC) + timedelta(days=1)
    return int(first.timestamp()), int(last.timestamp())


def test_launch_a_run_and_a_backfill_through_graphql(dagster_dev_stack: DevStack, sandbox_server: SandboxServer):
    ui = dagster_dev_stack.dev
    run_id = ui.launch_run("__ASSET_JOB", assets=[["stripe", "customers"]], partition=PARTITIONS[-1])
    assert ui.wait_run(run_id, timeout=600) == "SUCCESS"

    backfill = ui.launch_backfill([["stripe", "charges"]], PARTITIONS)
    runs = ui.wait_backfill(backfill, len(PARTITIONS), timeout=600)
    assert [r["status"] for r in runs] == ["SUCCESS"] * len(PARTITIONS)
    # the three partitions together hold every charge the sandbox has for those days, exactly once
    start, end = _day_bounds(PARTITIONS)
    truth = sorted(o["id"] for o in sandbox_server.sandbox.emulator("stripe").dump("charges")
                   if start <= o["created"] < end)
    loaded = run_query(str(dagster_dev_stack.warehouse), "SELECT _pk FROM raw_stripe.charges ORDER BY _pk",
                       timeout=120, say=lambda _: None)
    assert list(loaded["_pk"]) == truth


def test_the_demos_first_catch_up_is_one_run_over_the_history_and_never_launched_twice(
        dagster_dev_stack: DevStack, sandbox_server: SandboxServer):
    from integration_pipelines.first_run import launch_catch_up

    ui = dagster_dev_stack.dev
    first, last = (datetime.fromisoformat(p).date() for p in (PARTITIONS[0], PARTITIONS[-1]))
    run_id = launch_catch_up(ui.url, first, last, location=ui.location)
    assert ui.wait_run(run_id, timeout=600) == "SUCCESS"
    assert launch_catch_up(ui.url, first, last, location=ui.location) == run_id, "a second start launches nothing"
    tags = {t["key"]: t["value"] for t in ui.run(run_id)["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        PARTITIONS[0], PARTITIONS[-1])
