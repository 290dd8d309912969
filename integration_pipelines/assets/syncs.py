"""Outbound sync assets: `sync/<name>` in the `syncs` group, one per SyncSpec.

Dry run is run config (`dry_run: true` in the launchpad), so a person can see the plan (counts and sample
payloads) in the UI before anything is sent.
"""

from collections.abc import Sequence

import dagster as dg
from pydantic import Field

from ..resources import WarehouseResource
from ..settings import Settings
from ..syncs.engine import SyncResult, SyncSourceMissingError, run_sync
from ..syncs.spec import SyncSpec
from .automation import AFTER_UPSTREAM_UPDATES
from .extract import WAREHOUSE_POOL


class SyncConfig(dg.Config):
    dry_run: bool = Field(default=False, description="Plan only: count creates/updates/deletes, send nothing.")


def _md_errors(result: SyncResult) -> str:
    if not result.errors:
        return "none"
    rows = ["| record | operation | error |", "|---|---|---|"]
    rows += [f"| {k} | {op} | {msg[:200].replace('|', '/')} |" for k, op, msg in result.errors[:10]]
    return "\n".join(rows)


def build_sync_asset(spec: SyncSpec, settings: Settings) -> dg.AssetsDefinition:
    deps = [dg.AssetKey(list(key)) for key in spec.source_assets] + [
        dg.AssetKey(["sync", name]) for name in spec.depends_on]

    @dg.asset(key=dg.AssetKey(["sync", spec.name]), group_name="syncs", deps=deps, pool=WAREHOUSE_POOL,
              description=f"{spec.title}. {spec.description}", kinds={spec.target, "python"},
              tags={"target": spec.target, "mode": spec.mode}, metadata={"mode": spec.mode, "target": spec.target},
              automation_condition=AFTER_UPSTREAM_UPDATES)
    def _sync(context: dg.AssetExecutionContext, config: SyncConfig, warehouse: WarehouseResource
              ) -> dg.MaterializeResult:
        try:
            result = run_sync(spec, warehouse.get(log=context.log), settings, run_id=context.run.run_id,
                              dry_run=config.dry_run, log=context.log)
        except SyncSourceMissingError as exc:
            # e.g. no web form was ever submitted: nothing to push yet, which must not fail the nightly run
            context.log.warning(str(exc))
            return dg.MaterializeResult(metadata={"skipped": str(exc), "dry_run": config.dry_run})
        plan = result.plan.counts()
        context.log.info(f"sync {spec.name} plan: {plan}; created {result.created}, updated {result.updated}, "
                         f"deleted {result.deleted}, failed {result.failed}")
        metadata: dict[str, object] = {
            "dry_run": config.dry_run, **{f"planned_{k}": v for k, v in plan.items()},
            "created": result.created, "updated": result.updated, "deleted": result.deleted,
            "failed": result.failed, "errors": dg.MetadataValue.md(_md_errors(result)),
        }
        if result.resumed:  # batches an interrupted run sent without recording the outcome, re-sent as they were
            metadata["resumed"] = result.resumed
        if result.linked:  # found in the target (source id, or a lookup after a lost answer): recorded, not sent
            metadata["linked"] = result.linked
        if result.in_doubt:  # creates without a key that may or may not have been applied: an operator decides
            metadata["in_doubt"] = result.in_doubt
        if result.samples:
            metadata["sample_payloads"] = dg.MetadataValue.json(result.samples)
        return dg.MaterializeResult(metadata=metadata)

    return _sync


def build_sync_assets(specs: Sequence[SyncSpec], settings: Settings) -> list[dg.AssetsDefinition]:
    return [build_sync_asset(spec, settings) for spec in specs]
