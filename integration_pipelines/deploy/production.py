"""The production profile's code location (deploy/production/workspace.yaml; docs/deploy.md).

The project's definitions exactly as `integration_pipelines.definitions` builds them, with two additions:

- Dagster's Celery executor (dagster-celery) as the default executor: every job that does not choose its own
  executor (asset materializations and backfills launched from the UI, the weekly full refresh, the per-system jobs
  below) sends each step to the Celery workers as a task on the broker, so its steps run on whichever worker
  machine is free. The nightly job and the event lane keep their in-process executor (schedules.py explains why:
  with the one DuckDB warehouse their steps run one at a time anyway); they run in the run worker, which the code
  server starts (Dagster's DefaultRunLauncher).
- one job per enabled system, `extract_<system>`, that reads that system's streams and carries the run tag
  `integration_pipelines/system: <system>`; the instance's run queue (production/dagster.yaml) runs at most the
  vendor's limit of such runs at once.

The broker and result backend come from the environment only (IP_CELERY_BROKER_URL, IP_CELERY_BACKEND_URL), read
by the run worker when a run starts: the executor's config names the variables, never their values, so no URL or
password is written into the run's config or sent to the Postgres storage.
"""

from __future__ import annotations

import dagster as dg
from dagster_celery import celery_executor

from .. import definitions as project  # its `defs`, not imported by name: one Definitions at module scope
from ..connectors.spec import System
from ..settings import load_settings
from . import CELERY_BACKEND_ENV, CELERY_BROKER_ENV

SYSTEM_TAG = "integration_pipelines/system"

CELERY_CONFIG = {"broker": {"env": CELERY_BROKER_ENV}, "backend": {"env": CELERY_BACKEND_ENV}}
executor = celery_executor.configured(CELERY_CONFIG, name="celery")


def system_job_name(system: str) -> str:
    return f"extract_{system}"


def build_system_jobs(systems: list[System]) -> list[dg.UnresolvedAssetJobDefinition]:
    """One job per system: its extract assets (the asset group named after it) and their checks, tagged with the
    system so that the run queue can hold its runs to the vendor's limit."""
    return [
        dg.define_asset_job(
            system_job_name(system.name),
            selection=dg.AssetSelection.groups(system.name),
            description=f"Read {system.title}'s streams (a day's partition, or a range of days in one run). Runs of "
                        f"this job carry `{SYSTEM_TAG}: {system.name}`: the run queue holds them to "
                        f"{system.title}'s limit (deploy/production/dagster.yaml).",
            tags={SYSTEM_TAG: system.name},
        )
        for system in systems
    ]


defs = dg.Definitions.merge(
    project.defs,
    dg.Definitions(jobs=build_system_jobs(project.enabled_systems(load_settings())), executor=executor),
)
