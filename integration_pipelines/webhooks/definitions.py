"""Dagster side of webhooks: the landing store resource, the event-ingest asset and job, and the sensor.

The sensor claims landed files by moving them into `claimed/<batch>/` (atomic renames), records the batch's
sequence number in its cursor, and requests one run per batch with `run_key=<batch>`. Why claiming instead of an
mtime cursor: a file renamed into place after a tick listed the folder keeps an older mtime, and a cursor on
it would skip that file forever; a claimed file cannot be handed out twice and an unclaimed one is always seen
again. A tick that claimed a batch but crashed before returning has not advanced the cursor, so the next tick
re-requests every batch above the cursor with the same run key (no loss, no duplicate run).
"""


import json
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from ..resources import WarehouseResource
from ..settings import Settings, load_settings
from .config import WebhookSettings, load_webhook_settings
from .ingest import ingest_batch
from .landing import LocalLandingStore

WAREHOUSE_POOL = "warehouse"
EVENTS_ASSET = dg.AssetKey(["webhooks", "events"])
INGEST_JOB = "webhook_ingest"
SENSOR_NAME = "webhook_landing_sensor"


class LandingResource(dg.ConfigurableResource):
    """The landing store (a local folder today; the interface allows an object store)."""

    root: str

    def store(self) -> LocalLandingStore:
        return LocalLandingStore(Path(self.root))


class IngestConfig(dg.Config):
    batch: str = Field(default="", description="claimed batch to apply; empty = claim whatever is landed now")


def _batch_name(seq: int) -> str:
    return f"{seq:010d}-{uuid.uuid4().hex[:8]}"


def _seq(batch: str) -> int:
    return int(batch.split("-", 1)[0])


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
    )
    def webhook_events(context: dg.AssetExecutionContext, config: IngestConfig, warehouse: WarehouseResource,
                       webhook_landing: LandingResource) -> dg.MaterializeResult:
        store = webhook_landing.store()
        batch = config.batch
        if not batch:  # launched by hand from the UI: take what is landed now
            batch = _batch_name(0)
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


_IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
              dg.DagsterRunStatus.STARTED]


def build_sensor(job: Any, config: WebhookSettings) -> dg.SensorDefinition:
    @dg.sensor(name=SENSOR_NAME, job=job, minimum_interval_seconds=config.sensor_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Claims landed webhook files in batches and requests one ingest run per batch.")
    def webhook_landing_sensor(context: dg.SensorEvaluationContext, webhook_landing: LandingResource
                               ) -> dg.SensorResult:
        store = webhook_landing.store()
        cursor = json.loads(context.cursor) if context.cursor else {"seq": 0}
        emitted = int(cursor.get("seq", 0))
        # batches claimed by an earlier tick that crashed before its cursor was stored
        pending = [b for b in store.batches() if _seq(b) > emitted]
        next_seq = max([emitted, *(_seq(b) for b in store.batches())]) + 1
        # Backpressure: while ingest runs are still queued or running, new files stay in the landing folder and
        # are batched into one later run, instead of a run per tick piling up behind the warehouse pool.
        in_flight = context.instance.get_runs_count(filters=dg.RunsFilter(job_name=job.name, statuses=_IN_FLIGHT))
        room = max(0, config.max_inflight_runs - in_flight)
        for _ in range(min(room, config.max_runs_per_tick - len(pending))):
            batch = _batch_name(next_seq)
            if not store.claim(batch, limit=config.batch_files):
                break
            pending.append(batch)
            next_seq += 1
        if not pending:
            if in_flight and store.list("landing", limit=1):
                return dg.SensorResult(skip_reason=f"{in_flight} ingest run(s) still in flight; new events wait "
                                                   "in the landing folder and go into the next run together")
            return dg.SensorResult(skip_reason="no new webhook events")
        requests = []
        for batch in pending:
            files = len(store.list("claimed", batch=batch))
            requests.append(dg.RunRequest(
                run_key=f"webhooks-{batch}",
                run_config={"ops": {"webhooks__events": {"config": {"batch": batch}}}},
                tags={"webhooks/batch": batch, "webhooks/files": str(files)},
            ))
        return dg.SensorResult(run_requests=requests,
                               cursor=json.dumps({"seq": max(_seq(b) for b in pending)}))

    return webhook_landing_sensor


def build_webhook_definitions(settings: Settings | None = None, *, warehouse: WarehouseResource | None = None,
                              config: WebhookSettings | None = None) -> dg.Definitions:
    """The webhook area's Definitions. Pass the main Definitions' own `warehouse` resource object so that
    `Definitions.merge` sees one resource, not two conflicting ones."""
    settings = settings or load_settings()
    config = config or load_webhook_settings()
    asset = build_events_asset(settings, config)
    job = dg.define_asset_job(INGEST_JOB, selection=[EVENTS_ASSET],
                              description="Apply one claimed batch of webhook events to the warehouse.")
    return dg.Definitions(
        assets=[asset],
        jobs=[job],
        sensors=[build_sensor(job, config)],
        resources={
            "warehouse": warehouse or WarehouseResource(
                database=settings.warehouse_database, lock_timeout_seconds=settings.warehouse_lock_timeout_seconds),
            "webhook_landing": LandingResource(root=str(config.store_root(settings))),
        },
    )
