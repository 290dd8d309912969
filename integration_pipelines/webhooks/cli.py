"""`integration-pipelines webhooks serve | replay | status` (mounted by the main CLI as `webhooks`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..connectors.errors import ConfigurationError
from ..connectors.redaction import redact
from ..settings import load_settings
from .config import load_webhook_settings
from .ingest import replay as replay_files
from .landing import AREAS, LocalLandingStore

webhooks_app = typer.Typer(help="The webhook receiver and its landing store.", no_args_is_help=True)


def _store() -> LocalLandingStore:
    return LocalLandingStore(load_webhook_settings().store_root(load_settings()))


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
    typer.echo(f"Webhook receiver on http://{host}:{port}; landing store {receiver.store.root}"  # type: ignore[attr-defined]
               f"; vendors sign {receiver.config.public_url}")
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


@webhooks_app.command("status")
def status() -> None:
    """Count files per area and provider; show the first line of each failure."""
    store = _store()
    temps = sum(1 for area in (*AREAS, "seen") if (store.root / area).is_dir()
                for _ in (store.root / area).rglob(".*.tmp"))
    if temps:
        typer.echo(f"temp files (a writer died mid-write; `webhooks serve` removes those older than 10 min): {temps}")
    for area in AREAS:
        refs = ([r for b in store.batches() for r in store.list(area, batch=b)] if area == "claimed"
                else store.list(area))
        typer.echo(f"{area}: {len(refs)}")
        if area == "failed":
            for ref in refs:
                note = (store.read_note(ref) or "").strip().splitlines()
                typer.echo(f"  {ref.key}: {note[-1] if note else '?'}")
