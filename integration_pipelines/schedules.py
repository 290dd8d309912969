"""Schedules: the nightly sync of yesterday, and a weekly full re-read for streams read by change cursor.

The nightly run materializes yesterday's partition (yesterday in the configured timezone, so a business in
Berlin syncs its own yesterday), every unpartitioned incremental extract, the core models, the outbound syncs
and the reconciliation, in one run that the UI shows and can toggle. Cursor-based streams can miss changes
when an API's change filter is unreliable (deletes, back-dated edits); the weekly full refresh re-reads them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from .assets.extract import NIGHTLY_TAG
from .config_problems import ConfigProblem, schedule_or_problem
from .connectors.spec import System
from .settings import Settings

NIGHTLY_JOB = "nightly_sync"
FULL_REFRESH_JOB = "weekly_full_refresh"


def partition_for(scheduled: datetime, timezone: str) -> str:
    """The partition a tick at `scheduled` should load: the day before, in the business's timezone."""
    local = scheduled.astimezone(ZoneInfo(timezone))
    return (local.date() - timedelta(days=1)).isoformat()


def build_jobs_and_schedules(systems: list[System], settings: Settings
                             ) -> tuple[list, list, list[ConfigProblem]]:  # type: ignore[type-arg]
    """The jobs, the schedules, and the problems that kept a schedule out (an invalid cron or timezone leaves out
    only its own schedule; see config_problems.py)."""
    system_groups = [s.name for s in systems]
    nightly = dg.define_asset_job(
        NIGHTLY_JOB,
        selection=dg.AssetSelection.groups(*system_groups, "core", "syncs", "reconciliation", "roi", "reporting"),
        description="Yesterday's partitions of every extract, the core models, the syncs and the reconciliation.",
        tags=dict([NIGHTLY_TAG]),
        # One process for all steps: every step writes the one warehouse, so they run one at a time anyway, and
        # a process per step cost ~3 s of start-up each (13 min for ~70 steps that work for ~35 s).
        executor_def=dg.in_process_executor,
    )
    incremental = [(s, st) for s in systems for st in s.streams if st.partitioned is None]
    full_refresh = dg.define_asset_job(
        FULL_REFRESH_JOB,
        selection=dg.AssetSelection.assets(*[dg.AssetKey([s.name, st.name]) for s, st in incremental]),
        description="Re-read every cursor-based stream from the beginning (upserts by key; nothing duplicates).",
        config={"ops": {f"{s.name}__{st.name}": {"config": {"full_refresh": True}} for s, st in incremental}},
        tags={"integration_pipelines/kind": "full_refresh"},
    )
    timezone = settings.timezone

    def nightly_schedule() -> dg.ScheduleDefinition:
        @dg.schedule(name="nightly_sync_schedule", job=nightly, cron_schedule=settings.nightly_cron,
                     execution_timezone=timezone, default_status=dg.DefaultScheduleStatus.RUNNING,
                     description=f"Every night at {settings.nightly_cron} ({timezone}): yesterday, synced and "
                                 "reconciled.")
        def nightly_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
            partition = partition_for(context.scheduled_execution_time, timezone)
            return dg.RunRequest(run_key=f"nightly-{partition}", partition_key=partition)

        return nightly_sync_schedule

    def weekly_schedule() -> dg.ScheduleDefinition:
        return dg.ScheduleDefinition(
            name="weekly_full_refresh_schedule", job=full_refresh, cron_schedule=settings.weekly_full_refresh_cron,
            execution_timezone=timezone, default_status=dg.DefaultScheduleStatus.STOPPED,
            description="Weekly full re-read of cursor-based streams (turn on for APIs whose change filters miss "
                        "deletes or back-dated edits).")

    built = [schedule_or_problem(nightly_schedule, "IP_NIGHTLY_CRON / IP_TIMEZONE")]
    if incremental:
        built.append(schedule_or_problem(weekly_schedule, "IP_WEEKLY_FULL_REFRESH_CRON / IP_TIMEZONE"))
    jobs = [nightly] + ([full_refresh] if incremental else [])
    schedules = [b for b in built if isinstance(b, dg.ScheduleDefinition)]
    return jobs, schedules, [b for b in built if isinstance(b, ConfigProblem)]
