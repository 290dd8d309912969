"""`integration-pipelines webhooks serve | replay | status` (mounted by the main CLI as `webhooks`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..connectors.errors import ConfigurationError
from ..connectors.redaction import redact
from ..settings import load_settings
from .config import load_webhook_settings
from .ingest import replay as replay_files
from .landing import AREAS, LandingStore, LocalLandingStore, open_landing_store

webhooks_app = typer.Typer(help="The webhook receiver and its landing store.", no_args_is_help=True)


def _store() -> LandingStore:
    return open_landing_store(load_settings(), load_webhook_settings())


@webhooks_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="bind address; keep it on loopback behind a TLS proxy")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8766,
) -> None:
    """Run the receiver (POST /webhooks/<provider>, GET /metrics, GET /healthz)."""
    import uvicorn

    from .receiver import build_receiver

    try:
        receiver = build_receiver()
    except ConfigurationError as exc:  # sandbox secrets on a public URL, a bad provider list, an unreadable file
        typer.echo(redact(str(exc)), err=True)
        raise typer.Exit(2) from None
    swept = receiver.store.sweep_temp() if isinstance(receiver.store, LocalLandingStore) else 0
    if swept:
        typer.echo(f"Removed {swept} temp file(s) a killed receiver left in the landing store (never acknowledged; "
                   "the providers re-send those events).")
    typer.echo(f"Webhook receiver on http://{host}:{port}; landing store {receiver.store.location}"
               f"; vendors sign {receiver.config.public_url}")
    # which providers accept events, from the same states the routes were built from (so it cannot disagree)
    typer.echo("Providers (live: configured secret; sandbox: the published fake secret; off: refused):")
    for line in receiver.start_lines():
        typer.echo(f"  {line}")
    uvicorn.run(receiver.app(), host=host, port=port, log_level="info", access_log=False, lifespan="off")


@webhooks_app.command("replay")
def replay(
    provider: Annotated[str | None, typer.Option(help="only this provider")] = None,
    event_id: Annotated[str | None, typer.Option("--id", help="only this event id")] = None,
    claimed: Annotated[bool, typer.Option(help="also return files stuck in claimed/ (a run that died)")] = False,
) -> None:
    """Move failed events (and optionally orphaned claims) back to landing; the sensor picks them up."""
    moved = replay_files(_store(), provider, event_id, include_claimed=claimed)
    for ref in moved:
        typer.echo(f"replaying {ref.key}")
    typer.echo(f"{len(moved)} event(s) back in landing/")


def _status_areas(store: LandingStore) -> list[dict[str, object]]:
    """One record per area: files, files per provider, temp files (a writer died mid-write; local store only), and
    for `failed` each failure's key, provider and last line of its note. One function for the text and the JSON,
    so the two cannot disagree."""
    local = isinstance(store, LocalLandingStore)
    records: list[dict[str, object]] = []
    for area in AREAS:
        refs = ([r for b in store.batches() for r in store.list(area, batch=b)] if area == "claimed"
                else store.list(area))
        providers: dict[str, int] = {}
        for ref in refs:
            providers[ref.provider] = providers.get(ref.provider, 0) + 1
        temps = sum(1 for _ in (store.root / area).rglob(".*.tmp")) if local and (store.root / area).is_dir() else 0
        record: dict[str, object] = {"area": area, "files": len(refs), "providers": providers, "temp_files": temps}
        if area == "failed":
            failures = []
            for ref in refs:
                note = (store.read_note(ref) or "").strip().splitlines()
                failures.append({"key": ref.key, "provider": ref.provider, "event_id": ref.event_id,
                                 "error": redact(note[-1]) if note else None})
            record["failures"] = failures
        records.append(record)
    return records


@webhooks_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of lines")] = False,
) -> None:
    """Count files per area and provider; show the first line of each failure."""
    import json

    store = _store()
    areas = _status_areas(store)
    seen = store.root / "seen"
    seen_temps = (sum(1 for _ in seen.rglob(".*.tmp")) if isinstance(store, LocalLandingStore) and seen.is_dir()
                  else 0)
    if as_json:
        typer.echo(json.dumps(areas, indent=2))
        return
    temps = seen_temps + sum(int(a["temp_files"]) for a in areas)  # type: ignore[call-overload]
    if temps:
        typer.echo(f"temp files (a writer died mid-write; `webhooks serve` removes those older than 10 min): {temps}")
    for area in areas:
        typer.echo(f"{area['area']}: {area['files']}")
        for failure in area.get("failures", []):  # type: ignore[attr-defined]
            typer.echo(f"  {failure['key']}: {failure['error'] or '?'}")


@webhooks_app.command("trace")
def trace(
    event_id: Annotated[str, typer.Argument(help="the provider's event id (as `webhooks status` and the file name "
                                                 "show it)")],
    provider: Annotated[str | None, typer.Option(help="the provider, when an id could belong to several")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of sections")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for a writing run")] = 60.0,
) -> None:
    """What happened to one event: its file (landing, claimed, processed, failed with the error), its
    raw_webhooks.events row, the raw rows it upserted, the core rows those feed, and the sync ledger rows of those
    records (status and target id). Exit 2 when the event is nowhere."""
    import json
    from contextlib import nullcontext
    from pathlib import Path

    from ..warehouse.query import open_warehouse
    from .trace import trace_event

    database = load_settings().warehouse_database
    missing = not database.startswith("md:") and database != ":memory:" and not Path(database).exists()
    warehouse = None if missing else open_warehouse(database, timeout, lambda m: typer.echo(m, err=True))
    with warehouse.connect(read_only=warehouse.is_file) if warehouse else nullcontext() as con:
        found = trace_event(con, _store(), event_id, provider)
    if as_json:
        typer.echo(json.dumps(found.as_json(), indent=2, default=str))
        raise typer.Exit(0 if found.found else 2)
    if not found.found:
        typer.echo(f"No event {event_id!r}" + (f" from {provider}" if provider else "") + " in the landing store "
                   f"({_store().root}) or in raw_webhooks.events.", err=True)
        for note in found.notes:
            typer.echo(f"note: {note}", err=True)
        raise typer.Exit(2)
    typer.echo(f"event {event_id} ({found.provider})")
    typer.echo("file:")
    for f in found.files or []:
        where = f"{f['area']}" + (f" (batch {f['batch']})" if f.get("batch") else "")
        typer.echo(f"  {where}: {f['path']}")
        if f.get("error") is not None:
            typer.echo(f"    failed: {f['error']}  (whole note: {f['error_note']})")
    if not found.files:
        typer.echo("  none in the landing store (it may have been removed after processing)")
    row = found.event_row
    typer.echo("raw_webhooks.events: " + (f"type {row.get('type')}, received {row.get('received_at')}, applied by "
                                          f"run {row.get('_run_id')} at {row.get('_extracted_at')}" if row else
                                          "no row (not applied yet)"))
    typer.echo("raw rows:")
    for r in found.raw_rows:
        if r["found"]:
            data = r["row"]
            typer.echo(f"  {r['table']} _pk={r['_pk']}: loaded by run {data.get('_run_id')} at "
                       f"{data.get('_extracted_at')}, version {data.get('_version')}")
        else:
            typer.echo(f"  {r['table']} _pk={r['_pk']}: not found" + (f" ({r['note']})" if r.get("note") else ""))
    if not found.raw_rows:
        typer.echo("  none")
    typer.echo("core rows:")
    for c in found.core_rows:
        data = c["row"]
        extra = ", ".join(f"{k}={data[k]}" for k in ("golden_id", "status", "amount_minor", "currency", "email")
                          if data.get(k) not in (None, ""))
        typer.echo(f"  {c['table']} {data.get('source_system')}:{data.get('source_id')}"
                   + (f" ({extra})" if extra else ""))
    if not found.core_rows:
        typer.echo("  none")
    typer.echo("sync ledger:")
    for entry in found.ledger_rows:
        error = (entry.get("last_error") or "").splitlines()[0][:120] if entry.get("last_error") else ""
        typer.echo(f"  {entry['sync_name']} {entry['record_key']}: {entry['status']}"
                   + (f", target id {entry['target_id']}" if entry.get("target_id") else "")
                   + (f", last synced {entry['last_synced_at']}" if entry.get("last_synced_at") else "")
                   + (f", error: {error}" if error else ""))
    if not found.ledger_rows:
        typer.echo("  none")
    for note in found.notes:
        typer.echo(f"note: {note}")
