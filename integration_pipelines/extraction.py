"""Run one stream read into the warehouse: pages → bounded Arrow batches → Parquet spool → one transaction.

The cursor is computed while reading and committed in the same transaction as the rows it describes, so a
failed load never advances it; a failure anywhere before the commit leaves the warehouse untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .connectors.errors import MalformedPageError
from .connectors.http import LogSink, json_path
from .connectors.readahead import HandOverLog, read_ahead
from .connectors.reader import ReadWindow, parse_cursor, read_pages
from .connectors.runtime import ResolvedSystem, build_client
from .connectors.soap import build_soap_client, read_soap_pages
from .connectors.spec import Stream
from .feeds import SnapshotRouter
from .provenance import account_of
from .settings import Settings
from .warehouse.batches import records_to_table
from .warehouse.duckdb import LoadResult, RowSource, StreamState, Warehouse
from .warehouse.spool import Spool, sweep_stale_spools

UNPARTITIONED = "all"
# Requests are not logged one by one in the run log (see connectors.http); a long read says where it is instead.
PROGRESS_EVERY_SECONDS = 30.0


@dataclass
class ExtractResult:
    system: str
    stream: str
    state_key: str
    incremental_since: datetime | None
    pages: int
    requests: int
    records: int
    cursor: str | None
    load: LoadResult
    applied: dict[str, LoadResult] | None = None  # a change feed's snapshots, per stream they were applied to


def field_reader(path: str | None) -> Callable[[dict[str, Any]], Any]:
    """A record's value at `path`; a plain key skips the dotted-path walk, which is on every record's path."""
    if not path:
        return lambda record: None
    if "." not in path:
        return lambda record: record.get(path)
    return lambda record: json_path(record, path)


def _record_cursor(value: Any, stream: Stream, title: str, key: str, page: int) -> datetime | None:
    """The record's change time; a value that is not one stops the read, naming the record and the field, since a
    cursor that cannot be computed would make the next incremental run skip or repeat records."""
    try:
        return parse_cursor(value, stream.cursor_format)
    except (ValueError, TypeError, OverflowError) as exc:
        shown = repr(value)
        raise MalformedPageError(
            title,
            f"{stream.name}: record {key!r} on page {page} has {stream.cursor_field!r} = "
            f"{shown if len(shown) <= 80 else shown[:77] + '...'}, which is not a {stream.cursor_format} timestamp "
            f"({exc}). Nothing from this read was committed. If the API changed the field's format, set the "
            "stream's cursor_format (iso, unix, ms, dotnet) or cursor_field to match.",
        ) from exc


def raw_schema(system_name: str) -> str:
    return f"raw_{system_name}"


def extract_stream(
    *,
    resolved: ResolvedSystem,
    stream: Stream,
    warehouse: Warehouse,
    settings: Settings,
    run_id: str,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    partition_key: str | None = None,
    full_refresh: bool = False,
    log: LogSink | None = None,
    client_kwargs: dict[str, Any] | None = None,
) -> ExtractResult:
    system = resolved.system
    state_key = partition_key or UNPARTITIONED
    stored = warehouse.read_state(system.name, stream.name, state_key)
    since = parse_cursor(stored, "iso") if stored and stream.incremental and not full_refresh else None
    window = ReadWindow(start=window_start, end=window_end, cursor=since)
    sweep_stale_spools(settings.spool_dir, log)
    spool = Spool(settings.spool_dir / run_id / system.name / stream.name / state_key)
    started = datetime.now(UTC)
    extracted_at = started
    max_cursor = parse_cursor(stored, "iso") if stored else None
    pages = records = 0
    batch: list[dict[str, Any]] = []
    keys: list[str] = []
    cursors: list[str | None] = []

    router = SnapshotRouter(system, stream.snapshots, settings.spool_dir / run_id / system.name /
                            f"{stream.name}.snapshots" / state_key, run_id=run_id, extracted_at=extracted_at,
                            batch_rows=settings.batch_rows) if stream.snapshots else None
    applied: dict[str, LoadResult] | None = None
    primary_key_of = field_reader(stream.primary_key)
    cursor_of = field_reader(stream.cursor_field)

    def flush() -> None:
        if batch:
            spool.write(
                records_to_table(
                    batch, source_system=system.name, primary_keys=keys, cursors=cursors, run_id=run_id,
                    extracted_at=extracted_at, first_seq=records - len(batch),
                )
            )
            batch.clear()
            keys.clear()
            cursors.clear()

    try:
        # SOAP systems read through the SOAP engine; both yield the same pages of plain dict records.
        open_client, pages_of = (build_soap_client, read_soap_pages) if system.soap else (build_client, read_pages)
        # the next page is fetched while this one is converted; what the reader logs reaches `log` from here
        handover = HandOverLog(log)
        with open_client(resolved, log=handover if log is not None else None, **(client_kwargs or {})) as client:
            next_progress = time.monotonic() + PROGRESS_EVERY_SECONDS
            for page in read_ahead(pages_of(client, resolved, stream, window), handover):  # type: ignore[arg-type]
                pages += 1
                if log is not None and time.monotonic() >= next_progress:
                    log.info(f"{system.name}/{stream.name}: {pages:,} pages, {records:,} records read so far")
                    next_progress = time.monotonic() + PROGRESS_EVERY_SECONDS
                for record in page.records:
                    records += 1
                    batch.append(record)
                    keys.append(str(primary_key_of(record)))
                    raw_cursor = cursor_of(record)
                    cursors.append(None if raw_cursor is None else str(raw_cursor))
                    if router is not None:
                        router.add(record)
                    moment = _record_cursor(raw_cursor, stream, system.title, keys[-1], page.number)
                    if moment is not None and (max_cursor is None or moment > max_cursor):
                        max_cursor = moment
                    if len(batch) >= settings.batch_rows:
                        flush()
            flush()
            requests = client.requests_sent
        cursor_text = max_cursor.isoformat() if max_cursor else None
        # every row loaded by this read says where it came from: mode and account, constants added in SQL
        source = RowSource(resolved.mode, account_of(resolved))
        with warehouse.row_source(source):
            if router is not None:  # before the feed's own load, which commits its cursor
                applied = router.load(warehouse, raw_schema(system.name))
            load = warehouse.load_spool(
                schema=raw_schema(system.name),
                table=stream.name,
                files=spool.files,
                state=StreamState(system.name, stream.name, state_key, cursor_text),
                run_id=run_id,
                log_row={
                    "run_id": run_id, "system": system.name, "stream": stream.name, "state_key": state_key,
                    "started_at": started, "pages": pages, "requests": requests, "records": records,
                    "cursor": cursor_text, "source_mode": resolved.mode, "source_account": source.account,
                },
                source=source,
            )
    finally:
        spool.cleanup()
        if router is not None:
            router.cleanup()
    return ExtractResult(system.name, stream.name, state_key, since, pages, requests, records, cursor_text, load,
                         applied)
