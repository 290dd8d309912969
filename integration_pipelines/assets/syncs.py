"""Outbound sync assets: `sync/<name>` in the `syncs` group, one per SyncSpec.

Dry run is run config (`dry_run: true` in the launchpad), so a person can see the plan (counts and sample
payloads) in the UI before anything is sent. So are the operator's answers to failed records: `skip_keys` (with
`skip_reason`) acknowledges records, `retry_keys` / `retry_all` sends failing or parked ones again; both apply
before the run plans.

Failed records and the steps downstream (ROI, reporting). A record the target refuses is the record's problem,
not the run's: the step succeeds, the materialization lists the failing records (a markdown table), and the
asset check `failing_records` on each sync asset fails with ERROR severity, non-blocking. Non-blocking matters:
a blocking check, like a failed step, would make Dagster skip everything downstream in the same run, and the ROI
report (which reads `sync.runs`, written by every run, failed records or not) would go stale because one invoice
is disputed. The step still fails for systemic trouble, when the sync could not do its work at all (a refused
credential, an unreachable target, more new failures than the spec's error_threshold), as it should: that is
an incident, alerted by the run-failure sensor. We keep ROI's dependency on the sync assets (rather than dropping
it) so that ROI runs after the syncs of the same run and counts tonight's operations, and so the automation
condition refreshes it when a sync materializes.
"""

from collections.abc import Sequence

import dagster as dg
from pydantic import Field

from ..resources import WarehouseResource
from ..settings import Settings
from ..syncs.engine import SyncResult, SyncSourceMissingError, run_sync
from ..syncs.operations import FailingRecord, failing_records, markdown_table, retry_records, skip_records
from ..syncs.spec import SyncSpec
from .automation import AFTER_UPSTREAM_UPDATES
from .extract import WAREHOUSE_POOL

FAILING_CHECK = "failing_records"


class SyncConfig(dg.Config):
    dry_run: bool = Field(default=False, description="Plan only: count creates/updates/deletes, send nothing.")
    skip_keys: list[str] = Field(
        default=[], description="Record keys to acknowledge before the run: never sent again, listed as skipped "
        "(like `integration-pipelines sync skip`).")
    skip_reason: str = Field(default="", description="Why the skip_keys are skipped (shown by `sync errors`).")
    retry_keys: list[str] = Field(
        default=[], description="Failing, parked or skipped record keys to send again in this run (attempts reset, "
        "like `integration-pipelines sync retry`).")
    retry_all: bool = Field(default=False, description="Send every failing, parked and skipped record again.")


def _md_errors(result: SyncResult) -> str:
    if not result.errors:
        return "none"
    rows = ["| record | operation | error |", "|---|---|---|"]
    rows += [f"| {k} | {op} | {msg[:200].replace('|', '/')} |" for k, op, msg in result.errors[:10]]
    return "\n".join(rows)


def build_sync_asset(spec: SyncSpec, settings: Settings) -> dg.AssetsDefinition:
    deps = [dg.AssetKey(list(key)) for key in spec.source_assets] + [
        dg.AssetKey(["sync", name]) for name in spec.depends_on]

    key = dg.AssetKey(["sync", spec.name])

    @dg.asset(key=key, group_name="syncs", deps=deps, pool=WAREHOUSE_POOL,
              description=f"{spec.title}. {spec.description}", kinds={spec.target, "python"},
              tags={"target": spec.target, "mode": spec.mode}, metadata={"mode": spec.mode, "target": spec.target},
              automation_condition=AFTER_UPSTREAM_UPDATES,
              check_specs=[dg.AssetCheckSpec(
                  FAILING_CHECK, asset=key, blocking=False,
                  description="Records the target refused (failing, parked) or that are held in doubt. Fails with "
                  "ERROR severity and does not block downstream assets; see `integration-pipelines sync errors`.")])
    def _sync(context: dg.AssetExecutionContext, config: SyncConfig, warehouse: WarehouseResource
              ) -> dg.MaterializeResult:
        store = warehouse.get(log=context.log)
        if config.skip_keys or config.retry_keys or config.retry_all:
            with store.connect() as con:
                if config.skip_keys:
                    skipped = skip_records(con, spec, config.skip_keys, config.skip_reason, by="launchpad",
                                           data_dir=settings.data_dir)
                    context.log.info(f"sync {spec.name}: skipped {len(skipped)} record(s): {', '.join(skipped)}")
                if config.retry_keys or config.retry_all:
                    again = retry_records(con, spec, None if config.retry_all else config.retry_keys,
                                          data_dir=settings.data_dir)
                    context.log.info(f"sync {spec.name}: {len(again)} record(s) will be sent again")
        try:
            result = run_sync(spec, store, settings, run_id=context.run.run_id,
                              dry_run=config.dry_run, log=context.log)
        except SyncSourceMissingError as exc:
            # e.g. no web form was ever submitted: nothing to push yet, which must not fail the nightly run
            context.log.warning(str(exc))
            return dg.MaterializeResult(metadata={"skipped": str(exc), "dry_run": config.dry_run},
                                        check_results=[_check([])])
        with store.connect(read_only=store.is_file) as con:
            failing = failing_records(con, spec.name)
        plan = result.plan.counts()
        context.log.info(f"sync {spec.name} plan: {plan}; created {result.created}, updated {result.updated}, "
                         f"deleted {result.deleted}, failed {result.failed}")
        metadata: dict[str, object] = {
            "dry_run": config.dry_run, **{f"planned_{k}": v for k, v in plan.items()},
            # held back by the plan, always shown: before the sync's start, waiting for backoff, parked, skipped
            **{k: getattr(result.plan, k) for k in ("before_start", "backoff", "parked", "skipped")},
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
        if result.plan.start is not None:
            metadata["start"] = f"{result.plan.start.isoformat()} ({result.start_source})"
        metadata["new_failures"] = len(result.new_failures)
        metadata["failing_records"] = dg.MetadataValue.md(markdown_table(failing))
        return dg.MaterializeResult(metadata=metadata, check_results=[_check(failing)])

    return _sync


def _check(records: Sequence[FailingRecord]) -> dg.AssetCheckResult:
    """ERROR while any record fails, is parked or is in doubt; skipped records were acknowledged and pass."""
    counts = {status: sum(r.status == status for r in records) for status in ("failed", "parked", "in_doubt",
                                                                              "skipped")}
    open_ = [r for r in records if r.status != "skipped"]
    return dg.AssetCheckResult(
        check_name=FAILING_CHECK, passed=not open_, severity=dg.AssetCheckSeverity.ERROR,
        metadata={**counts, "records": dg.MetadataValue.md(markdown_table(open_))})


def build_sync_assets(specs: Sequence[SyncSpec], settings: Settings) -> list[dg.AssetsDefinition]:
    return [build_sync_asset(spec, settings) for spec in specs]
