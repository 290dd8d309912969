"""Apply a claimed batch of landed events to the warehouse.

Why it is safe to run twice: every row goes through `Warehouse.load_spool`, the same keyed upsert extraction
uses, so a replayed event whose snapshot is unchanged writes nothing, and `raw_webhooks.events` is keyed by
(provider, event id). A file that cannot be parsed or mapped moves to `failed/` with the error beside it and
does not stop the others; a warehouse failure moves the whole batch to `failed/` (replay brings it back) and
fails the run. Files move to `processed/` only after their rows are committed.
"""

from __future__ import annotations

import base64
import json
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..connectors.redaction import redact
from ..warehouse.batches import records_to_table
from ..warehouse.duckdb import RowSource, Warehouse
from ..warehouse.spool import Spool
from .events import Row, parse_body, rows_for
from .landing import EventFile, LandingStore
from .notices import streams_for_notice

EVENTS_SCHEMA = "webhooks"


@dataclass
class IngestResult:
    batch: str
    files: int = 0
    processed: int = 0
    failed: list[str] = field(default_factory=list)
    rows_by_table: dict[str, int] = field(default_factory=dict)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0  # snapshots older than what the warehouse holds (late, out of order, replayed): not applied
    changed_tables: dict[str, int] = field(default_factory=dict)  # table → rows inserted or updated
    received_at: list[str] = field(default_factory=list)  # of the events applied: the lane measures latency
    refresh: set[tuple[str, str]] = field(default_factory=set)  # (system, stream) named by change notices

    @property
    def changed(self) -> bool:
        return any(self.changed_tables.values())


def read_envelope(store: LandingStore, ref: EventFile) -> dict[str, Any]:
    document = json.loads(store.read(ref))
    text = document["body"]
    document["raw_body"] = base64.b64decode(text) if document.get("body_encoding") == "base64" else text.encode()
    return document


def rows_of(document: dict[str, Any]) -> list[Row]:
    """Every row one landed event yields: its snapshots/events, and its `raw_webhooks.events` row."""
    provider = document["provider"]
    headers = document.get("headers") or {}
    payload = parse_body(provider, document["raw_body"], headers.get("content-type", ""))
    rows = rows_for(provider, document["event_id"], headers, payload)
    event = {"provider": provider, "event_id": document["event_id"], "type": document.get("type", ""),
             "received_at": document["received_at"], "payload": payload}
    rows.append(Row(EVENTS_SCHEMA, "events", f"{provider}/{document['event_id']}", event, document["received_at"]))
    return rows


def ingest_batch(store: LandingStore, warehouse: Warehouse, spool_dir: Path, batch: str, run_id: str,
                 log: Any = None) -> IngestResult:
    refs = store.list("claimed", batch=batch)
    result = IngestResult(batch=batch, files=len(refs))
    documents: list[tuple[EventFile, dict[str, Any], list[Row]]] = []
    for ref in refs:
        try:
            document = read_envelope(store, ref)
            documents.append((ref, document, rows_of(document)))
        except Exception as exc:  # one bad file must not block the batch
            _fail(store, ref, exc, result, log)
    # events in the order they were received, so the latest snapshot of an object wins (last _seq)
    documents.sort(key=lambda item: (item[1]["received_at"], item[0].key))
    # one load per table and mode, so every row records whether a live or a sandbox secret let its event in
    tables: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for _, document, rows in documents:
        for row in rows:
            tables[(row.system, row.stream, document.get("verified_as") or "")].append(row)
    extracted_at = datetime.now(UTC)
    sources = RowSources()
    try:
        for (system, stream, mode), rows in sorted(tables.items()):
            spool = Spool(spool_dir / run_id / "webhooks" / batch / system / stream / (mode or "unknown"))
            try:
                spool.write(records_to_table(
                    [r.record for r in rows], source_system=system, primary_keys=[r.pk for r in rows],
                    cursors=[r.cursor for r in rows], run_id=run_id, extracted_at=extracted_at, first_seq=0,
                    versions=[r.version for r in rows]))
                load = warehouse.load_spool(schema=f"raw_{system}", table=stream, files=spool.files, state=None,
                                            run_id=run_id, source=sources.of(system, mode))
            finally:
                spool.cleanup()
            result.rows_by_table[load.table] = result.rows_by_table.get(load.table, 0) + len(rows)
            result.inserted += load.inserted
            result.updated += load.updated
            result.unchanged += load.unchanged
            result.stale += load.stale
            if load.inserted or load.updated:
                result.changed_tables[load.table] = load.inserted + load.updated
    except BaseException as exc:
        for ref, _, _ in documents:
            _fail(store, ref, exc, result, log)
        store.drop_batch(batch)
        raise
    result.processed += len(store.move_many([ref for ref, _, _ in documents], "processed"))
    result.received_at = [document["received_at"] for _, document, _ in documents]
    for _, document, rows in documents:
        provider = document["provider"]
        for row in rows:
            if (row.system, row.stream) == (provider, "events"):  # a notice: which stream it says changed
                result.refresh |= streams_for_notice(provider, row.record)
    store.drop_batch(batch)
    return result


class RowSources:
    """The `RowSource` of a webhook row: the mode the receiver verified its event in (`verified_as`) and, when the
    system resolves to that same mode here, the account it resolves to (`provenance.account_of`); an event of the
    other mode (the receiver ran with other settings) keeps its mode and an unknown account. Envelopes landed
    before the receiver recorded the mode load with no source: unknown, as provenance.py describes."""

    def __init__(self) -> None:
        self._accounts: dict[tuple[str, str], str | None] = {}

    def of(self, system: str, mode: str) -> RowSource | None:
        if mode not in ("live", "sandbox"):
            return None
        if (system, mode) not in self._accounts:
            self._accounts[(system, mode)] = _account(system, mode)
        return RowSource(mode, self._accounts[(system, mode)])


def _account(system: str, mode: str) -> str | None:
    from ..connectors.errors import ConfigurationError
    from ..connectors.registry import discover_systems
    from ..connectors.runtime import resolve_system
    from ..provenance import account_of
    from ..settings import load_settings

    spec = next((s for s in discover_systems() if s.name == system), None)
    if spec is None:  # a provider with no system of its own (web forms, Standard Webhooks senders)
        return None
    try:
        resolved = resolve_system(spec, load_settings())
    except ConfigurationError:  # half-configured here: the mode is still known, the account is not
        return None
    return account_of(resolved) if resolved.mode == mode else None


def _fail(store: LandingStore, ref: EventFile, exc: BaseException, result: IngestResult, log: Any) -> None:
    failed = store.move(ref, "failed")
    text = redact("".join(traceback.format_exception(exc)))
    store.write_note(failed, text)
    result.failed.append(ref.key)
    if log is not None:
        log.error(redact(f"webhook event {ref.key} failed: {exc}"))


def replay(store: LandingStore, provider: str | None = None, event_id: str | None = None,
           include_claimed: bool = False) -> list[EventFile]:
    """Move failed (and, with `include_claimed`, orphaned claimed) files back to landing for the sensor."""
    moved: list[EventFile] = []
    sources = [store.list("failed", provider=provider)]
    if include_claimed:
        sources += [store.list("claimed", provider=provider, batch=b) for b in store.batches()]
    for refs in sources:
        for ref in refs:
            if event_id is None or ref.event_id == event_id:
                moved.append(store.move(ref, "landing"))
    if include_claimed:
        for batch in store.batches():
            if not store.list("claimed", batch=batch):
                store.drop_batch(batch)
    return moved
