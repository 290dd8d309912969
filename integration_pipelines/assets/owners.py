"""Owners on every asset, not only the extracts (issue 19): who answers for an asset in the UI and its alerts.

A sync is owned by its target system's owner (`<TARGET>_OWNER`, else `IP_DEFAULT_OWNER`): whoever answers for what
lands in HubSpot answers for the syncs into it. Core, reconciliation, ROI, reporting and the webhook assets are owned
by `IP_DEFAULT_OWNER` (the webhook events asset sets it itself). An asset that names its owners already (the
extracts, by their source system) keeps them. Applied to the built assets with Dagster's `map_asset_specs`, so the
asset factories need not know about owners.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from ..connectors.spec import System
from ..settings import Settings
from .raw_checks import default_owners, system_owners


def with_owners(assets: Sequence[dg.AssetsDefinition], settings: Settings,
                sync_targets: Mapping[dg.AssetKey, System]) -> list[dg.AssetsDefinition]:
    """`assets` with owners on every spec that has none: the target system's for a sync (`sync_targets`: sync
    asset key → target system), else the default owner; unchanged when no owner is configured."""
    default = default_owners(settings)
    by_target = {system.name: system_owners(system, settings) for system in sync_targets.values()}

    def owned(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.owners:
            return spec
        target = sync_targets.get(spec.key)
        owners = by_target[target.name] if target is not None else default
        return spec.replace_attributes(owners=owners) if owners else spec

    return list(dg.map_asset_specs(owned, assets))
