"""`webhooks trace EVENT_ID`: what happened to one event, from its landed file to the targets.

The chain an operator follows by hand otherwise: the file (landing/, claimed/, processed/ or failed/ with its error
note), its `raw_webhooks.events` row, the raw rows it upserted (the object ids in its payload, as `rows_for` maps
them to `raw_<system>.<stream>` keys), the core rows those feed (`source_system`, `source_id`), and the sync ledger
rows of those records (a ledger key holds the source id, the golden id or a key built from them, split on `:`).
Read-only: it opens the warehouse read-only and never moves a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from ..warehouse.duckdb import quote_ident
from .events import MalformedPayload, Row, parse_body, rows_for
from .ingest import EVENTS_SCHEMA
from .landing import AREAS, LandingStore, LocalLandingStore, safe_event_id

SHOWN_CHARS = 400


@dataclass
class EventTrace:
    event_id: str
    provider: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    event_row: dict[str, Any] | None = None
    raw_rows: list[dict[str, Any]] = field(default_factory=list)
    core_rows: list[dict[str, Any]] = field(default_factory=list)
    ledger_rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    payload: Any = None

    @property
    def found(self) -> bool:
        return bool(self.files or self.event_row)

    def as_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "provider": self.provider, "found": self.found, "files": self.files,
                "event": self.event_row, "payload": self.payload, "raw_rows": self.raw_rows,
                "core_rows": self.core_rows, "ledger": self.ledger_rows, "notes": self.notes}


def _plain(value: Any) -> Any:
    """A warehouse value as JSON-ready data (timestamps as ISO text)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def find_files(store: LandingStore, event_id: str, provider: str | None) -> list[dict[str, Any]]:
    """Every copy of the event in the landing store (normally one), with the failure note when it failed."""
    name = safe_event_id(event_id)
    if not isinstance(store, LocalLandingStore):
        return _find_by_listing(store, name, provider)
    providers = provider or "*"
    found: list[dict[str, Any]] = []
    for area in AREAS:
        pattern = f"*/{providers}/*/{name}.json" if area == "claimed" else f"{providers}/*/{name}.json"
        for path in sorted((store.root / area).glob(pattern)) if (store.root / area).is_dir() else []:
            entry: dict[str, Any] = {"area": area, "path": str(path), "provider": path.parent.parent.name,
                                     "day": path.parent.name}
            if area == "claimed":
                entry["batch"] = path.parent.parent.parent.name
            note = path.with_name(f"{name}.error.txt")
            if note.exists():
                text = note.read_text(errors="replace").strip()
                entry["error"] = text.splitlines()[-1] if text else ""
                entry["error_note"] = str(note)
            found.append(entry)
    return found


def _document(path: Path) -> dict[str, Any] | None:
    import base64

    try:
        document = json.loads(path.read_bytes())
        text = document["body"]
        document["raw_body"] = base64.b64decode(text) if document.get("body_encoding") == "base64" else text.encode()
        return document
    except (OSError, ValueError, KeyError):
        return None


def _tables(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], set[str]]:
    columns: dict[tuple[str, str], set[str]] = {}
    for schema, table, column in con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE table_catalog = current_database()").fetchall():
        columns.setdefault((schema, table), set()).add(column)
    return columns


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in cursor.fetchall()]


def _short(row: dict[str, Any]) -> dict[str, Any]:
    """A raw row without the bulky columns, long values cut (the whole record is in `_raw`)."""
    out = {}
    for key, value in row.items():
        if key in ("_raw", "_hash"):
            continue
        if isinstance(value, str) and len(value) > SHOWN_CHARS:
            value = value[:SHOWN_CHARS - 1] + "…"
        out[key] = value
    return out


def _find_by_listing(store: LandingStore, name: str, provider: str | None) -> list[dict[str, Any]]:
    """`find_files` on a store without folders to glob (S3): list each area (a tool's pace, not the lane's)."""
    found: list[dict[str, Any]] = []
    for area in AREAS:
        refs = ([r for b in store.batches() for r in store.list(area, provider, batch=b)] if area == "claimed"
                else store.list(area, provider))
        for ref in refs:
            if ref.event_id != name:
                continue
            where = store.url(ref) if hasattr(store, "url") else f"{store.location} {area}/{ref.key}"
            entry: dict[str, Any] = {"area": area, "path": where, "provider": ref.provider, "day": ref.day}
            if area == "claimed":
                entry["batch"] = ref.batch
            text = (store.read_note(ref) or "").strip() if area == "failed" else ""
            if text:
                entry["error"] = text.splitlines()[-1]
            found.append(entry)
    return found


def trace_event(con: duckdb.DuckDBPyConnection | None, store: LandingStore, event_id: str,
                provider: str | None = None) -> EventTrace:
    trace = EventTrace(event_id, provider)
    trace.files = find_files(store, event_id, provider)
    providers = {f["provider"] for f in trace.files}
    if provider is None and len(providers) > 1:
        trace.notes.append(f"event id {event_id} landed for several providers ({', '.join(sorted(providers))}); "
                           "pass --provider to pick one")
    if trace.files:
        trace.provider = provider or trace.files[0]["provider"]
    columns = _tables(con) if con is not None else {}
    if con is None:
        trace.notes.append("no warehouse yet: only the landing store was searched")

    # the raw_webhooks.events row (keyed provider/event_id)
    if (f"raw_{EVENTS_SCHEMA}", "events") in columns:
        where, params = "event_id = ?", [event_id]
        if trace.provider:
            where, params = "_pk = ?", [f"{trace.provider}/{event_id}"]
        rows = _fetch(con, f"SELECT * FROM raw_{EVENTS_SCHEMA}.events WHERE {where} ORDER BY received_at",  # type: ignore[union-attr]
                      params)
        if rows:
            payload = rows[-1].pop("payload", None)
            try:
                trace.payload = json.loads(payload) if isinstance(payload, str) else payload
            except ValueError:
                trace.payload = payload
            trace.event_row = _short(rows[-1])
            trace.provider = trace.provider or str(rows[-1].get("provider"))
    if not trace.found:
        return trace

    # the rows the event maps to: from the landed file (it has the headers Shopify's topic lives in), else the row
    rows = _event_rows(trace)
    if rows is None:
        return trace
    wanted: list[Row] = [r for r in rows if (r.system, r.stream) != (EVENTS_SCHEMA, "events")]
    if not wanted:
        trace.notes.append("the event maps to no raw table besides raw_webhooks.events")
    source_ids: dict[str, set[str]] = {}
    for row in wanted:
        table = (f"raw_{row.system}", row.stream)
        entry: dict[str, Any] = {"table": f"raw_{row.system}.{row.stream}", "_pk": row.pk, "found": False}
        if table in columns:
            hits = _fetch(con, f"SELECT * FROM {quote_ident(table[0])}.{quote_ident(table[1])} WHERE _pk = ?",  # type: ignore[union-attr]
                          [row.pk])
            if hits:
                entry |= {"found": True, "row": _short(hits[0])}
        else:
            entry["note"] = "table not in the warehouse"
        trace.raw_rows.append(entry)
        if row.stream != "events":  # a change notice names a change; its own row feeds nothing in core
            source_ids.setdefault(row.system, set()).add(row.pk)

    # core rows fed by those records, and their golden ids
    keys: set[str] = {pk for pks in source_ids.values() for pk in pks}
    for (schema, table), cols in sorted(columns.items()):
        if schema != "core" or not {"source_system", "source_id"} <= cols:
            continue
        for system, pks in sorted(source_ids.items()):
            hits = _fetch(con, f"SELECT * FROM core.{quote_ident(table)} WHERE source_system = ? "  # type: ignore[union-attr]
                               "AND source_id IN (SELECT unnest(?::VARCHAR[]))", [system, sorted(pks)])
            for hit in hits:
                trace.core_rows.append({"table": f"core.{table}", "row": _short(hit)})
                keys |= {str(hit[c]) for c in ("source_id", "golden_id", "golden_customer_id") if hit.get(c)}

    # the sync ledger rows whose key holds one of those ids
    if ("sync", "ledger") in columns and keys:
        attempts = ("sync", "attempts") in columns
        trace.ledger_rows = _fetch(con, f"""
            SELECT l.sync_name, l.record_key, l.status, l.external_id AS target_id, l.attempts, l.last_synced_at,
                   {"coalesce(a.last_error, l.last_error)" if attempts else "l.last_error"} AS last_error,
                   l.last_run_id
            FROM sync.ledger AS l
            {"LEFT JOIN sync.attempts AS a USING (sync_name, record_key)" if attempts else ""}
            WHERE l.record_key IN (SELECT unnest(?::VARCHAR[]))
               OR list_has_any(string_split_regex(l.record_key, '[:|/]'), ?::VARCHAR[])
            ORDER BY l.sync_name, l.record_key""", [sorted(keys), sorted(keys)])  # type: ignore[union-attr]
    elif keys:
        trace.notes.append("no sync ledger in the warehouse yet (no sync has run)")
    return trace


def _event_rows(trace: EventTrace) -> list[Row] | None:
    provider = trace.provider or ""
    document = next((d for f in trace.files if (d := _document(Path(f["path"]))) is not None), None)
    try:
        if document is not None:
            headers = document.get("headers") or {}
            payload = parse_body(provider, document["raw_body"], headers.get("content-type", ""))
            if trace.payload is None:
                trace.payload = json.loads(json.dumps(payload))  # before rows_for fills in anything
            return rows_for(provider, str(document.get("event_id", trace.event_id)), headers, payload)
        if trace.payload is not None:
            return rows_for(provider, trace.event_id, {}, trace.payload)
    except (MalformedPayload, ValueError, KeyError, AttributeError, TypeError) as exc:
        trace.notes.append(f"the payload could not be mapped to raw rows: {exc}")
        return None
    trace.notes.append("the landed file could not be read")
    return None
