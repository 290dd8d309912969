"""Extract assets: one per stream, `<system>/<stream>`, grouped by system, daily-partitioned where the API
filters by time. Every extract writes the warehouse, so all share the `warehouse` pool (limit 1 in the
instance's dagster.yaml): concurrent runs queue instead of fighting over the DuckDB file lock.
"""


from collections.abc import Sequence
from datetime import datetime, timedelta

import dagster as dg
from pydantic import Field

from ..connectors.runtime import resolve_system
from ..connectors.spec import Stream, System
from ..extraction import ExtractResult, extract_stream, raw_schema
from ..resources import WarehouseResource
from ..settings import Settings
from .raw_checks import freshness_policy, previous_row_count, raw_check_results, raw_check_specs, system_owners

WAREHOUSE_POOL = "warehouse"


class ExtractConfig(dg.Config):
    full_refresh: bool = Field(
        default=False,
        description="Ignore the stored cursor and read everything again (rows are still upserted by key).",
    )


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=settings.partitions_start.isoformat(), timezone="UTC")


#: The columns every raw table has besides the vendor's own fields (which are the record's top-level fields, named
#: and typed as the API sends them: the vendor's API reference is their documentation).
ENGINE_COLUMNS = {
    "_pk": "the record's id in the vendor's system (the stream's primary key): rows are upserted by it",
    "_cursor": "the record's change cursor (e.g. updated_at) as the vendor sent it",
    "_source_system": "the system the record was read from",
    "_extracted_at": "when this version of the record was read",
    "_run_id": "the Dagster run (or event batch) that read it",
    "_raw": "the whole record as the API sent it (JSON): what staging models read",
    "_hash": "hash of _raw: an unchanged record is not rewritten",
    "_version": "the record's own change time, when the stream has one: an older version never replaces a newer",
    "_source_mode": "sandbox or live: the mode the system ran in when the row was read",
    "_source_account": "the account read (host plus realm, tenant or shop; never a credential)",
}


def announce_schema_change(system: System, stream: Stream, added: dict[str, str], log: object) -> None:
    """The vendor added fields to a stream's records (the load gave them columns, recorded in ops.schema_changes):
    a staging model may want them, or a renamed field may have left one empty. Logged, and alerted once per change
    (the incident names the columns, so the same change never alerts twice)."""
    from ..alerts import Alert, Alerter

    fields = sorted(name for name in added if not name.startswith("_"))
    if not fields:
        return
    listed = ", ".join(f"{name} ({added[name]})" for name in fields)
    table = f"{raw_schema(system.name)}.{stream.name}"
    getattr(log, "warning", print)(f"{system.title} {stream.name}: new fields in the API's records: {listed}")
    alerter = Alerter()
    alerter.raise_alert(Alert(
        incident=f"schema:{table}:{','.join(fields)}",
        title=f"{system.title} {stream.name}: the API's records have new fields",
        summary=f"{table} gained the columns {listed}. Their values are loaded; a staging model reads only the "
                "fields it names, so check whether one should read them (or whether a field was renamed). "
                "`integration-pipelines systems status` lists every such change (ops.schema_changes).",
        url=f"{alerter.config.ui_base_url}/assets/{system.name}/{stream.name}"))


def _metadata(result: ExtractResult, mode: str) -> dict[str, object]:
    load = result.load
    metadata: dict[str, object] = {
        "dagster/row_count": load.total_rows,
        "dagster/table_name": load.table,
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name=name, type=kind, description=ENGINE_COLUMNS.get(name))
                     for name, kind in load.columns]
        ),
        "records_read": result.records,
        "pages": result.pages,
        "requests": result.requests,
        "inserted": load.inserted,
        "updated": load.updated,
        "unchanged": load.unchanged,
        "mode": mode,
        "incremental_since": result.incremental_since.isoformat() if result.incremental_since else "full read",
        "cursor": result.cursor or "",
    }
    if result.applied:  # a change feed: what its snapshots changed in the streams that hold those objects
        metadata["applied_to"] = dg.MetadataValue.json({
            f"{load_result.table}": {"inserted": load_result.inserted, "updated": load_result.updated,
                                     "unchanged": load_result.unchanged, "stale": load_result.stale}
            for load_result in result.applied.values()})
    if load.stale:  # an event applied while this read ran was newer than what the read saw
        metadata["stale"] = load.stale
    if load.new_columns:
        metadata["new_columns"] = ", ".join(load.new_columns)
    if load.type_warnings:
        metadata["type_warnings"] = dg.MetadataValue.md("\n".join(f"- {w}" for w in load.type_warnings))
    if load.preview_markdown:
        metadata["preview"] = dg.MetadataValue.md(load.preview_markdown)
    return metadata


NIGHTLY_TAG = ("integration_pipelines/kind", "nightly")


def covered_by_change_feed(system: System, stream: Stream) -> bool:
    """Another stream of the system carries this one's snapshots (Stripe's Events API): it needs no re-read."""
    return any(other.snapshots is not None and stream.name in other.snapshots.streams.values()
               for other in system.streams)


def read_window(context: dg.AssetExecutionContext, system: System, stream: Stream, settings: Settings
                ) -> tuple[datetime, datetime] | None:
    """The partition's time window; in the nightly run, widened back by IP_NIGHTLY_REREAD_DAYS for a stream that
    lists by creation time without a change feed. Why: such an API never shows a change to an older record (a
    refund ten days after the payment); re-reading a trailing window brings it in by the next night, and the keyed
    upsert writes only what changed."""
    if not (context.has_partition_key or context.has_partition_key_range):  # a day, or a range of days
        return None
    window = context.partition_time_window
    start = window.start
    nightly = context.run.tags.get(NIGHTLY_TAG[0]) == NIGHTLY_TAG[1]
    if nightly and settings.nightly_reread_days and not covered_by_change_feed(system, stream):
        start = start - timedelta(days=settings.nightly_reread_days)
    return start, window.end


def _state_key(context: dg.AssetExecutionContext) -> str:
    """One partition's key, or `first..last` for a run over a range of days (the demo's first catch-up, a
    single-run backfill): the range reads its whole window in one pass."""
    if context.has_partition_key:
        return context.partition_key
    days = context.partition_key_range
    return days.start if days.start == days.end else f"{days.start}..{days.end}"


def build_extract_asset(system: System, stream: Stream, settings: Settings) -> dg.AssetsDefinition:
    """One stream's asset, carrying the raw-level checks, freshness policy and owner of `raw_checks.py`."""
    key = dg.AssetKey([system.name, stream.name])
    partitions = daily_partitions(settings) if stream.partitioned == "daily" else None
    description = (
        f"{stream.description or stream.name} from {system.title}, landed in "
        f"`{raw_schema(system.name)}.{stream.name}` (upserted by `{stream.primary_key}`)."
    )

    @dg.asset(
        key=key,
        group_name=system.name,
        description=description,
        partitions_def=partitions,
        pool=WAREHOUSE_POOL,
        kinds={system.name, "duckdb"},
        tags={"system": system.name, "category": system.category},
        metadata={"table": f"{raw_schema(system.name)}.{stream.name}", "primary_key": stream.primary_key},
        check_specs=raw_check_specs(key),
        freshness_policy=freshness_policy(settings),
        owners=system_owners(system, settings),
    )
    def _extract(
        context: dg.AssetExecutionContext, config: ExtractConfig, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        resolved = resolve_system(system, settings)
        window = read_window(context, system, stream, settings) if partitions is not None else None
        previous_rows = previous_row_count(context, key)  # before this load's own event exists
        store = warehouse.get(log=context.log)
        if window is not None and window[1] - window[0] > timedelta(days=1):
            context.log.info(f"nightly run: re-reading {system.title} {stream.name} from {window[0]:%Y-%m-%d} "
                             "(IP_NIGHTLY_REREAD_DAYS) for changes to older records")
        result = extract_stream(
            resolved=resolved,
            stream=stream,
            warehouse=store,
            settings=settings,
            run_id=context.run.run_id,
            window_start=window[0] if window else None,
            window_end=window[1] if window else None,
            partition_key=_state_key(context) if partitions is not None else None,
            full_refresh=config.full_refresh,
            log=context.log,
        )
        context.log.info(
            f"{system.title} {stream.name}: read {result.records} records in {result.pages} pages; "
            f"{result.load.inserted} new, {result.load.updated} changed, {result.load.unchanged} unchanged."
        )
        for name, applied in (result.applied or {}).items():
            context.log.info(
                f"{system.title} {stream.name} → {name}: {applied.inserted} new, {applied.updated} changed, "
                f"{applied.unchanged} unchanged, {applied.stale} older than what the warehouse holds.")
        for warning in result.load.type_warnings:
            context.log.warning(warning)
        if result.load.schema_known:
            announce_schema_change(system, stream, result.load.new_column_types, context.log)
        checks = raw_check_results(context, store, key, raw_schema(system.name), stream.name,
                                   result.load.total_rows, previous_rows, settings)
        for check in checks:
            if not check.passed:
                context.log.warning(f"{system.title} {stream.name}: check {check.check_name} failed: "
                                    f"{check.description}")
        return dg.MaterializeResult(metadata=_metadata(result, resolved.mode), check_results=checks)

    return _extract


def build_extract_assets(systems: Sequence[System], settings: Settings) -> list[dg.AssetsDefinition]:
    return [build_extract_asset(system, stream, settings) for system in systems for stream in system.streams]
