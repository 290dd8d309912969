"""Dagster side of webhooks: the landing store resource, the event lane job and its sensor, and the
`webhooks/events` asset for applying what is landed by hand.

The sensor only starts the event lane worker (webhooks/lane.py) when events are waiting and no worker holds the
lane; the worker claims batches itself (atomic renames into `claimed/<batch>/`), so an event waits for a poll of
a fraction of a second instead of a sensor tick, a queue hop and a process start. Why claiming instead of an
mtime cursor: a file renamed into place after a listing keeps an older mtime, and a cursor on it would skip that
file forever; a claimed file cannot be handed out twice and an unclaimed one is always seen again. A batch left
claimed by a worker that died is applied again by the next worker (keyed upserts make that harmless).
"""


import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from ..alerts import Alert, Alerter
from ..assets.raw_checks import default_owners
from ..connectors.spec import System
from ..locks import LockTimeoutError, is_held
from ..resources import WarehouseResource
from ..settings import Settings, load_settings
from ..syncs.spec import SyncSpec
from .config import WebhookSettings, load_webhook_settings
from .ingest import ingest_batch
from .landing import LandingStore, LocalLandingStore
from .lane import BatchOutcome, EventLane, SyncOutcome, hold_lane, lane_lock

WAREHOUSE_POOL = "warehouse"
EVENTS_ASSET = dg.AssetKey(["webhooks", "events"])
INGEST_JOB = "webhook_ingest"
LANE_JOB = "event_lane"
LANE_OP = "event_lane_worker"
SENSOR_NAME = "webhook_landing_sensor"


class LandingResource(dg.ConfigurableResource):
    """The landing store: the local folder `root`, or the S3-compatible bucket `url` (IP_LANDING_URL) when set.
    `root` also holds the event lane's lock file, which is per machine (docs/warehouse-shared.md)."""

    root: str
    url: str = ""

    def store(self) -> LandingStore:
        if self.url:
            from .landing_s3 import S3LandingStore

            return S3LandingStore.from_url(self.url)
        return LocalLandingStore(Path(self.root))


class IngestConfig(dg.Config):
    batch: str = Field(default="", description="claimed batch to apply; empty = claim whatever is landed now")


def _batch_name() -> str:
    return f"{int(time.time() * 1000):013d}-manual-{uuid.uuid4().hex[:6]}"


def build_events_asset(settings: Settings, hook_config: WebhookSettings) -> dg.AssetsDefinition:
    batch_files = hook_config.batch_files

    @dg.asset(
        key=EVENTS_ASSET,
        group_name="webhooks",
        pool=WAREHOUSE_POOL,
        kinds={"duckdb"},
        description="Verified webhook events applied to the warehouse: object snapshots upserted into "
        "`raw_<system>.<stream>` (same keys as extraction), change notices into `raw_<provider>.events`, and "
        "every event into `raw_webhooks.events`.",
        metadata={"table": "raw_webhooks.events"},
        owners=default_owners(settings),
    )
    def webhook_events(context: dg.AssetExecutionContext, config: IngestConfig, warehouse: WarehouseResource,
                       webhook_landing: LandingResource) -> dg.MaterializeResult:
        store = webhook_landing.store()
        batch = config.batch
        if not batch:  # launched by hand from the UI: take what is landed now
            batch = _batch_name()
            store.claim(batch, limit=batch_files)
        result = ingest_batch(store, warehouse.get(log=context.log), settings.spool_dir, batch,
                              context.run.run_id, log=context.log)
        context.log.info(
            f"batch {batch}: {result.processed} of {result.files} events applied ({result.inserted} new rows, "
            f"{result.updated} changed, {result.unchanged} unchanged, {result.stale} older than what the warehouse "
            f"holds and left alone); {len(result.failed)} moved to failed/"
        )
        return dg.MaterializeResult(metadata={
            "batch": batch, "files": result.files, "processed": result.processed,
            "failed": len(result.failed), "inserted": result.inserted, "updated": result.updated,
            "unchanged": result.unchanged, "stale": result.stale,
            "tables": dg.MetadataValue.json(result.rows_by_table),
        })

    return webhook_events


_STARTING = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING]
DEFERRED_RETRY_SECONDS = 5.0
STARTUP_GRACE_SECONDS = 60  # a STARTED lane run younger than this may not hold its lock yet


class LaneConfig(dg.Config):
    drain: bool = Field(default=False, description="stop as soon as nothing is landed (tests, a manual catch-up)")
    idle_seconds: float = Field(default=-1, description="stop after this long without events; -1: the setting "
                                "IP_WEBHOOK_LANE_IDLE_SECONDS")
    max_seconds: float = Field(default=-1, description="stop (after the current batch) after this long; the "
                               "sensor starts the next worker; -1: IP_WEBHOOK_LANE_MAX_SECONDS")


def _report(context: dg.OpExecutionContext, outcome: BatchOutcome, alerter: Alerter | None) -> None:
    """One log line per batch, and materializations of what it changed, so the UI's asset pages show them."""
    ingest = outcome.ingest
    context.log.info(outcome.summary())
    context.log_event(dg.AssetMaterialization(asset_key=EVENTS_ASSET, metadata={
        "batch": outcome.batch, "files": ingest.files, "processed": ingest.processed,
        "failed": len(ingest.failed), "inserted": ingest.inserted, "updated": ingest.updated,
        "unchanged": ingest.unchanged, "stale": ingest.stale,
        "tables": dg.MetadataValue.json(ingest.rows_by_table),
        "oldest_event_age_seconds": round(outcome.oldest_event_age, 3),
        "batch_seconds": round(outcome.seconds, 3)}))
    if outcome.core is not None:
        for table, change in outcome.core.changes.items():  # only what changed: the rest was not touched
            if table.startswith("core.") and (change.inserted or change.updated or change.deleted):
                context.log_event(dg.AssetMaterialization(
                    asset_key=dg.AssetKey(["core", table.split(".", 1)[1]]),
                    metadata={"dagster/row_count": change.rows, "inserted": change.inserted,
                              "updated": change.updated, "deleted": change.deleted, "unchanged": change.unchanged,
                              "built_by": "event lane", "batch": outcome.batch}))
    _report_syncs(context, outcome.syncs, alerter, outcome.batch)


def _report_syncs(context: dg.OpExecutionContext, syncs: Sequence[SyncOutcome], alerter: Alerter | None,
                  batch: str) -> None:
    for sync in syncs:
        incident = f"event-lane:sync:{sync.name}"
        if sync.error:
            context.log.error(f"sync {sync.name} failed in the event lane: {sync.error}")
            if alerter is not None:
                alerter.raise_alert(Alert(
                    incident=incident, title=f"sync {sync.name} failed in the event lane",
                    summary="Events keep landing and other syncs keep running; this sync is tried again with "
                            "the next batch and by the nightly run.",
                    url=f"run {context.run.run_id}", first_error=sync.error))
            continue
        if alerter is not None:
            alerter.resolve(incident)
        if sync.result is not None:
            r = sync.result
            context.log_event(dg.AssetMaterialization(asset_key=dg.AssetKey(["sync", sync.name]), metadata={
                "created": r.created, "updated": r.updated, "deleted": r.deleted, "failed": r.failed,
                **{f"planned_{k}": v for k, v in r.plan.counts().items()},
                "built_by": "event lane", "batch": batch, "seconds": round(sync.seconds, 3)}))


def build_lane_job(settings: Settings, hooks: WebhookSettings, systems: Sequence[System] | None,
                   syncs: Sequence[SyncSpec]) -> dg.JobDefinition:
    system_rows = None if systems is None else [(s.name, s.category) for s in systems]

    @dg.op(name=LANE_OP, tags={"kind": "events"},
           description="Takes landed webhook events to the targets: apply → rebuild core → the syncs whose "
                       "sources changed, batch after batch, until idle.")
    def event_lane(context: dg.OpExecutionContext, config: LaneConfig, warehouse: WarehouseResource,
                   webhook_landing: LandingResource) -> None:
        idle = hooks.lane_idle_seconds if config.idle_seconds < 0 else config.idle_seconds
        lifetime = hooks.lane_max_seconds if config.max_seconds < 0 else config.max_seconds
        store = webhook_landing.store()
        root = Path(webhook_landing.root)
        lane = EventLane(store, warehouse.get(log=context.log), settings, systems=system_rows, syncs=syncs,
                         batch_files=hooks.batch_files, run_id=context.run.run_id, log=context.log,
                         sync_workers=hooks.lane_sync_workers)
        alerter = Alerter(settings) if syncs else None
        try:
            with hold_lane(root, timeout=15):
                began = last_work = last_retry = time.monotonic()
                batches = 0
                while True:
                    batch = lane.next_batch()
                    if batch is not None:
                        _report(context, lane.process(batch), alerter)
                        batches += 1
                        last_work = time.monotonic()
                        if time.monotonic() - began < lifetime:
                            continue
                    now = time.monotonic()
                    if lane.deferred and now - last_retry >= DEFERRED_RETRY_SECONDS:
                        last_retry = now  # syncs that were busy in another run when a batch wanted them
                        retried = [r for r in lane.retry_deferred() if r.name not in lane.deferred]
                        for sync in retried:
                            context.log.info(f"deferred sync {sync.name}: "
                                             + (sync.error or sync.skipped or "sent what the batches changed"))
                        _report_syncs(context, retried, alerter, "deferred")
                    quiet = not lane.deferred and (config.drain or now - last_work >= idle)
                    if quiet or now - began >= lifetime:
                        if lane.deferred:
                            context.log.warning("stopping with syncs still busy elsewhere: "
                                                f"{', '.join(lane.deferred)}; the next batch or run sends them")
                        break
                    time.sleep(hooks.lane_poll_seconds)
                context.log.info(f"event lane stops after {batches} batch(es) and {now - began:.0f} s; the "
                                 "sensor starts the next worker when events land")
        except LockTimeoutError:
            context.log.info("another event lane worker holds the lane; this one has nothing to do")

    @dg.job(name=LANE_JOB, executor_def=dg.in_process_executor, tags={"integration_pipelines/kind": "events"},
            description="The event lane: one worker run that applies landed webhook events and pushes their "
                        "effects to the targets within seconds (started by the sensor when events land).")
    def event_lane_job() -> None:
        event_lane()

    return event_lane_job


def build_sensor(job: Any, config: WebhookSettings) -> dg.SensorDefinition:
    @dg.sensor(name=SENSOR_NAME, job=job, minimum_interval_seconds=config.sensor_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Starts the event lane worker when webhook events are waiting and no worker runs.")
    def webhook_landing_sensor(context: dg.SensorEvaluationContext, webhook_landing: LandingResource
                               ) -> dg.SensorResult:
        store = webhook_landing.store()
        if not store.batches() and not store.list("landing", limit=1):
            return dg.SensorResult(skip_reason="no new webhook events")
        if is_held(lane_lock(Path(webhook_landing.root))):
            return dg.SensorResult(skip_reason="the event lane is running and takes the waiting events")
        records = context.instance.get_run_records(filters=dg.RunsFilter(
            job_name=job.name, statuses=[*_STARTING, dg.DagsterRunStatus.STARTED]))
        now = time.time()
        starting = [r for r in records if r.dagster_run.status in _STARTING
                    or (r.start_time or now) > now - STARTUP_GRACE_SECONDS]
        if starting:
            return dg.SensorResult(skip_reason=f"an event lane run is starting ({starting[0].dagster_run.run_id})")
        return dg.SensorResult(run_requests=[dg.RunRequest(
            run_key=f"event-lane-{uuid.uuid4().hex[:12]}", tags={"integration_pipelines/kind": "events"})])

    return webhook_landing_sensor


def build_webhook_definitions(settings: Settings | None = None, *, warehouse: WarehouseResource | None = None,
                              config: WebhookSettings | None = None, systems: Sequence[System] | None = None,
                              syncs: Sequence[SyncSpec] = ()) -> dg.Definitions:
    """The webhook area's Definitions. Pass the main Definitions' own `warehouse` resource object so that
    `Definitions.merge` sees one resource, not two conflicting ones. Without `systems` the event lane applies
    events only (no core rebuild, no syncs): the webhook engine's own tests use that."""
    settings = settings or load_settings()
    config = config or load_webhook_settings()
    asset = build_events_asset(settings, config)
    job = dg.define_asset_job(INGEST_JOB, selection=[EVENTS_ASSET],
                              description="Apply what is landed now to the warehouse (by hand; the event lane "
                                          "does this continuously).")
    lane = build_lane_job(settings, config, systems, syncs)
    return dg.Definitions(
        assets=[asset],
        jobs=[job, lane],
        sensors=[build_sensor(lane, config)],
        resources={
            "warehouse": warehouse or WarehouseResource(
                database=settings.warehouse_database, lock_timeout_seconds=settings.warehouse_lock_timeout_seconds),
            "webhook_landing": LandingResource(root=str(config.store_root(settings)), url=settings.landing_url or ""),
        },
    )
