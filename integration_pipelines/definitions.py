"""The one `Definitions` object, assembled from the per-area factories."""

from __future__ import annotations

import dagster as dg
from pydantic import ValidationError

from .alerts import build_alert_sensors
from .assets.core import build_core_assets
from .assets.extract import build_extract_assets
from .assets.owners import with_owners
from .assets.reconciliation import build_reconciliation_assets
from .assets.reporting import build_reporting_asset
from .assets.roi import build_roi_asset
from .assets.syncs import build_sync_assets
from .assets.systems_check import build_systems_check_job
from .config_problems import build_problems_sensor, settings_problems
from .connectors.registry import discover_systems
from .connectors.spec import System
from .resources import WarehouseResource
from .schedules import build_jobs_and_schedules
from .settings import Settings, load_overrides, load_settings
from .syncs.registry import discover_syncs
from .webhooks.change_poll import build_change_poll_sensors
from .webhooks.definitions import build_webhook_definitions


def enabled_systems(settings: Settings) -> list[System]:
    return [s for s in discover_systems() if settings.system_enabled(s.name) and load_overrides(s.name).enabled]


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    if settings is None:
        try:
            settings = load_settings()
        except ValidationError as exc:  # a setting everything reads: only the report loads (config_problems.py)
            return dg.Definitions(sensors=[build_problems_sensor(settings_problems(exc))])
    systems = enabled_systems(settings)
    warehouse = WarehouseResource(
        database=settings.warehouse_database, lock_timeout_seconds=settings.warehouse_lock_timeout_seconds
    )
    jobs, schedules, problems = build_jobs_and_schedules(systems, settings)
    jobs = [*jobs, build_systems_check_job(systems, settings)]  # "test connection" from the UI's launchpad
    syncs = [s for s in discover_syncs() if settings.system_enabled(s.target)]
    known = {system.name: system for system in discover_systems()}
    sync_targets = {dg.AssetKey(["sync", s.name]): known[s.target] for s in syncs if s.target in known}
    pipelines = dg.Definitions(
        jobs=jobs,
        schedules=schedules,
        assets=with_owners([
            *build_extract_assets(systems, settings),
            build_core_assets(systems),
            build_reconciliation_assets(settings),
            *build_sync_assets(syncs, settings),
            build_roi_asset(syncs),
            build_reporting_asset(),
        ], settings, sync_targets),
        resources={"warehouse": warehouse},
        sensors=[
            # Evaluates the eager conditions on core models and syncs: after new raw data (a webhook batch, a
            # backfill), core is rebuilt and the syncs push what changed. Running by default, as users expect.
            dg.AutomationConditionSensorDefinition(
                "core_syncs_reconciliation_automation",
                target=dg.AssetSelection.groups("core", "syncs", "reconciliation", "roi", "reporting"),
                default_status=dg.DefaultSensorStatus.RUNNING,
                minimum_interval_seconds=30,
            ),
            *build_alert_sensors(settings),
            # ERPs that send no webhooks (NetSuite, the legacy ERP, SAP), when enabled: asked every
            # IP_CHANGE_POLL_SECONDS what changed; a change lands a notice the event lane acts on like a webhook's.
            *build_change_poll_sensors(systems, settings),
            *([build_problems_sensor(problems, settings.data_dir)] if problems else []),
        ],
    )
    return dg.Definitions.merge(pipelines, build_webhook_definitions(settings, warehouse=warehouse, systems=systems,
                                                                     syncs=syncs))


defs = build_definitions()
