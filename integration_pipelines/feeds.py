"""Change feeds: the snapshots an event stream carries, applied to the streams that hold those objects.

Why a separate step: a list API that filters by creation time (Stripe's `created[gte]`) never shows a change
to an old object, so a refund made ten days after its charge would never reach `raw_stripe.charges`. The
vendor's event feed (Stripe's Events API) lists every change with the object as it was after it. While the feed
is read, each event's snapshot is routed to a spool of its own stream; the snapshots are loaded before the
events themselves (whose load commits the feed's cursor), each by version, so a crash in between only means the
next read applies them again, and an older snapshot never replaces a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .connectors.http import json_path
from .connectors.reader import parse_cursor
from .connectors.spec import SnapshotFeed, Stream, System
from .warehouse.batches import records_to_table
from .warehouse.duckdb import LoadResult, Warehouse
from .warehouse.spool import Spool


@dataclass
class _Pending:
    stream: Stream
    spool: Spool
    records: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    cursors: list[str | None] = field(default_factory=list)
    versions: list[datetime | None] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    written: int = 0


class SnapshotRouter:
    """Collects the snapshots of one feed read, per target stream, in bounded batches on disk."""

    def __init__(self, system: System, feed: SnapshotFeed, spool_root: Path, *, run_id: str,
                 extracted_at: datetime, batch_rows: int) -> None:
        self.system, self.feed = system, feed
        self.run_id, self.extracted_at, self.batch_rows = run_id, extracted_at, batch_rows
        self._pending = {kind: _Pending(system.stream(name), Spool(spool_root / name))
                         for kind, name in feed.streams.items()}
        self._read = 0  # events seen, in read order: what orders two snapshots stamped in the same instant

    def add(self, event: dict[str, Any]) -> None:
        """Route one event's snapshot, if it carries an object of a type the feed maps."""
        self._read += 1
        target = self._pending.get(str(json_path(event, self.feed.type_path)))
        snapshot = json_path(event, self.feed.object_path)
        if target is None or not isinstance(snapshot, dict):
            return
        key = json_path(snapshot, target.stream.primary_key)
        if key is None:
            return
        cursor = json_path(snapshot, target.stream.cursor_field) if target.stream.cursor_field else None
        target.records.append(snapshot)
        target.keys.append(str(key))
        target.cursors.append(None if cursor is None else str(cursor))
        target.versions.append(parse_cursor(json_path(event, self.feed.version_field), self.feed.version_format))
        target.seqs.append(-self._read if self.feed.newest_first else self._read)
        if len(target.records) >= self.batch_rows:
            self._flush(target)

    def _flush(self, target: _Pending) -> None:
        if not target.records:
            return
        target.spool.write(records_to_table(
            target.records, source_system=self.system.name, primary_keys=target.keys, cursors=target.cursors,
            run_id=self.run_id, extracted_at=self.extracted_at, first_seq=target.written,
            versions=target.versions, seqs=target.seqs))
        target.written += len(target.records)
        target.records, target.keys, target.cursors, target.versions, target.seqs = [], [], [], [], []

    def load(self, warehouse: Warehouse, schema: str) -> dict[str, LoadResult]:
        """Apply every routed snapshot (one short transaction per stream); the streams' own cursors stay as they
        are, since a feed says nothing about which creation days a list read has covered."""
        results: dict[str, LoadResult] = {}
        for target in self._pending.values():
            self._flush(target)
            if target.spool.files:
                results[target.stream.name] = warehouse.load_spool(
                    schema=schema, table=target.stream.name, files=target.spool.files, state=None,
                    run_id=self.run_id)
        return results

    def cleanup(self) -> None:
        for target in self._pending.values():
            target.spool.cleanup()
