"""The one `Definitions` object, assembled from the per-area factories."""

from __future__ import annotations

import dagster as dg

from .assets.core import build_core_assets
from .assets.extract import build_extract_assets
from .assets.syncs import build_sync_assets
from .connectors.registry import discover_systems
from .resources import WarehouseResource
from .settings import Settings, load_overrides, load_settings
from .syncs.registry import discover_syncs


def enabled_systems(settings: Settings):
    return [s for s in discover_systems() if settings.system_enabled(s.name) and load_overrides(s.name).enabled]


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    systems = enabled_systems(settings)
    return dg.Definitions(
        assets=[
            *build_extract_assets(systems, settings),
            build_core_assets(systems),
            *build_sync_assets([s for s in discover_syncs() if settings.system_enabled(s.target)], settings),
        ],
        resources={
            "warehouse": WarehouseResource(
                database=settings.warehouse_database,
                lock_timeout_seconds=settings.warehouse_lock_timeout_seconds,
            )
        },
    )


defs = build_definitions()
