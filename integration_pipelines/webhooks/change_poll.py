"""The change poll: an event for the ERPs that send none (NetSuite, the legacy ERP, SAP).

A webhook makes the event lane read a stream seconds after a change; NetSuite (without a SuiteScript deployed in the
account), SAP's stock API and the legacy ERP's web service call nobody. So a Dagster sensor per such ERP asks it,
every `IP_CHANGE_POLL_SECONDS` (30; 0 = off), a cheap question: "what changed since my cursor?" (each connector's
`CHANGE_PROBES`):

- NetSuite: a `TransactionSearchBasic` for stock-moving transactions (adjustments, receipts, fulfillments …) and an
  `ItemSearchBasic` for edited items, both on `lastModifiedDate` (an item's own lastModifiedDate does not move
  when its stock does, so the transactions are the stock question);
- the legacy ERP: `GetStockLevels(changedSince)`;
- SAP: the stock snapshot's key and quantity (`$select`), compared by digest with the last answer (the stock entity
  has no change timestamp).

When something changed, the sensor lands a notice in the landing store under the ERP's name, exactly where a
verified webhook lands (`{"source": "change_poll", "stream": …}`), and from there it is a webhook notice like Odoo's:
the lane (started by `webhook_landing_sensor` if it is not running) reads the named stream through the read spec,
rebuilds the core tables it feeds and runs the syncs that read them (`inventory_to_shopify`, `inventory_to_square`).
Latency: up to one poll interval, plus the lane's usual seconds (docs/webhooks.md).

Cursor (the sensor's own, kept by Dagster): per probe, the newest change time the ERP reported (`since`, the ERP's
clock, not ours) and the changes seen within the probe's lookback (`seen`: id, time and a digest of the record);
each question asks from `since` minus the lookback, so a change committed late with an earlier timestamp is still
found, and one found again is recognised and not announced twice. A notice's id is a digest of what it announces,
and the landing store refuses an id it has landed before, so a tick that landed a notice but died before Dagster
kept its cursor lands nothing new when it runs again. Should the same change still be announced twice (the
cursor reset, a second instance), the lane reads the stream again, nothing in it changed, core stays as it is and
the syncs' ledgers send nothing: the poll never writes to a target itself. Backpressure is the lane's: notices
wait in `landing/` and one read of a stream answers all the notices of a batch; while a notice for a stream still
waits unclaimed, the poll lands no other for it (the read that one causes comes later and sees the new change too).

The first tick of a probe asks from now minus its lookback (a change just before the poll was switched on is
announced once); a snapshot probe's first answer is only remembered. One probe failing (the ERP down, a refused
credential) is logged and leaves that probe's cursor as it was; the tick fails only when every probe of the ERP
failed, so the sensor's page in the UI shows it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..connectors import legacy_erp, netsuite, sap
from ..connectors.errors import ConfigurationError
from ..connectors.http import json_path
from ..connectors.reader import ReadWindow, parse_cursor, read_pages
from ..connectors.redaction import redact
from ..connectors.registry import get_system
from ..connectors.runtime import ResolvedSystem, build_client, resolve_system
from ..connectors.soap import build_soap_client, read_soap_pages
from ..connectors.spec import Stream, System
from ..settings import Settings
from .landing import LandingStore, open_landing_store, safe_event_id
from .receiver import envelope

#: system → {stream the lane reads: the probes that say it changed}
PROBES: dict[str, dict[str, tuple[Stream, ...]]] = {
    module.SYSTEM.name: module.CHANGE_PROBES for module in (netsuite, legacy_erp, sap)}
SOURCE = "change_poll"
MAX_SEEN = 5000  # per probe: a cursor must stay small; beyond this the oldest are forgotten (at worst a re-read)
MAX_LISTED = 100  # changes listed in one notice (the notice names the stream; the list is for the audit)


class ChangePollSettings(BaseSettings):
    """`IP_CHANGE_POLL_*`: how often the ERPs without webhooks are asked what changed, and which."""

    model_config = SettingsConfigDict(env_prefix="IP_", env_file=".env", extra="ignore")

    change_poll_seconds: int = Field(default=30, ge=0, description="seconds between two questions to one ERP; "
                                     "0 switches the change poll off")
    change_poll_systems: str = Field(default="", description="comma list of the ERPs to poll; empty = every "
                                     "enabled ERP without webhooks (netsuite, legacy_erp, sap)")
    change_poll_max_pages: int = Field(default=10, ge=1, description="pages one question may read; more changes "
                                       "than that are announced anyway and the rest found by the next tick")

    def systems(self, enabled: Iterable[str]) -> list[str]:
        """The ERPs to poll: enabled, watched by a probe, and listed (when a list is given)."""
        chosen = {s.strip().lower() for s in self.change_poll_systems.split(",") if s.strip()}
        unknown = sorted(chosen - set(PROBES))
        if unknown:
            raise ConfigurationError(f"IP_CHANGE_POLL_SYSTEMS names {', '.join(unknown)}, which the change poll "
                                     f"does not watch; it watches {', '.join(sorted(PROBES))}")
        if self.change_poll_seconds == 0:
            return []
        return [name for name in enabled if name in PROBES and (not chosen or name in chosen)]


def load_change_poll_settings() -> ChangePollSettings:
    return ChangePollSettings()


@dataclass
class PollOutcome:
    """One tick for one ERP: the cursor to keep, what was landed, and what failed."""

    state: dict[str, Any]
    landed: list[str] = field(default_factory=list)  # event ids landed now
    announced: dict[str, int] = field(default_factory=dict)  # stream → new changes found
    errors: list[str] = field(default_factory=list)
    probes: int = 0

    def summary(self) -> str:
        if self.errors and len(self.errors) == self.probes:
            return "every question failed: " + "; ".join(self.errors)
        parts = [f"{stream}: {n} change(s) announced" for stream, n in sorted(self.announced.items())]
        parts += [f"FAILED {e}" for e in self.errors]
        return "; ".join(parts) or "nothing changed"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _polling_client(resolved: ResolvedSystem) -> ResolvedSystem:
    """A sensor tick must end within Dagster's evaluation timeout (60 s): few retries, short timeouts. What one
    tick does not get, the next asks again."""
    overrides = resolved.overrides
    tight = overrides.model_copy(update={
        "max_retries": min(overrides.max_retries if overrides.max_retries is not None else 2, 2),
        "timeout_seconds": min(overrides.timeout_seconds, 15.0),
        "backoff_cap_seconds": min(overrides.backoff_cap_seconds or 2.0, 2.0)})
    return dataclasses.replace(resolved, overrides=tight)


def read_probe(resolved: ResolvedSystem, probe: Stream, window: ReadWindow, max_pages: int, log: Any = None
               ) -> tuple[list[dict[str, Any]], bool]:
    """The probe's records (bounded by `max_pages`) and whether it read them all."""
    bounded = probe.model_copy(update={"max_pages": max_pages + 1})
    records: list[dict[str, Any]] = []
    if resolved.system.soap is not None:
        with build_soap_client(resolved, log=log) as client:
            pages = read_soap_pages(client, resolved, bounded, window)
            for number, page in enumerate(pages, start=1):
                if number > max_pages:
                    return records, False
                records.extend(page.records)
        return records, True
    with build_client(resolved, log=log) as http:
        for number, page in enumerate(read_pages(http, resolved, bounded, window), start=1):
            if number > max_pages:
                return records, False
            records.extend(page.records)
    return records, True


def _since_probe(resolved: ResolvedSystem, probe: Stream, previous: dict[str, Any] | None, now: datetime,
                 max_pages: int, log: Any) -> tuple[dict[str, Any], list[str]]:
    """A probe that filters on a change time: (its next state, the changes not announced before, each as
    `id@time#digest`: a later change of the same record is a different change)."""
    since = parse_cursor(previous["since"], "iso") if previous else now
    seen = set(previous.get("seen", [])) if previous else set()
    records, _complete = read_probe(resolved, probe, ReadWindow(cursor=since), max_pages, log)
    found: list[tuple[str, datetime, str]] = []
    for record in records:
        at = parse_cursor(json_path(record, probe.cursor_field or ""), probe.cursor_format) if probe.cursor_field \
            else None
        moment = at or since
        found.append((str(json_path(record, probe.primary_key)), moment,
                      f"{json_path(record, probe.primary_key)}@{moment.isoformat()}#{_digest(record)[:12]}"))
    new = [token for _, _, token in found if token not in seen]
    newest = max([since, *(moment for _, moment, _ in found)])
    window_start = newest - timedelta(seconds=probe.lookback_seconds)
    keep = sorted({token for _, moment, token in found if moment >= window_start})[-MAX_SEEN:]
    return {"since": newest.isoformat(), "seen": keep}, new


def _snapshot_probe(resolved: ResolvedSystem, probe: Stream, previous: dict[str, Any] | None, now: datetime,
                    max_pages: int, log: Any) -> tuple[dict[str, Any], list[str] | None]:
    """A probe without a change time: (its next state, the change marker or None). Compared by digest; the marker
    carries the moment, since a stock can come back to an earlier state (A → B → A) and that is a change too."""
    records, complete = read_probe(resolved, probe, ReadWindow(), max_pages, log)
    if not complete:
        raise ConfigurationError(
            f"{resolved.system.name}/{probe.name}: more than {max_pages} pages to compare; raise "
            f"IP_CHANGE_POLL_MAX_PAGES or leave {resolved.system.name} out of IP_CHANGE_POLL_SYSTEMS")
    digest = _digest(sorted(records, key=lambda r: str(json_path(r, probe.primary_key))))
    if previous is None or previous.get("digest") == digest:  # the first answer is only remembered
        return {"digest": digest}, None
    return {"digest": digest}, [f"snapshot {previous['digest'][:12]}->{digest[:12]}@{now.isoformat()}"]


def poll_system(system_name: str, settings: Settings, store: LandingStore, state: dict[str, Any], *,
                max_pages: int = 10, now: datetime | None = None, log: Any = None) -> PollOutcome:
    """Ask one ERP every question of its probes; land one notice per stream that changed. Never raises for a
    probe's failure (it is in `errors`, and that probe's state is kept as it was)."""
    now = now or datetime.now(UTC)
    outcome = PollOutcome(state=dict(state))
    resolved: ResolvedSystem | None = None
    for stream_name, probes in PROBES[system_name].items():
        changed: list[str] = []
        for probe in probes:
            outcome.probes += 1
            key = f"{stream_name}/{probe.name}"
            try:
                resolved = resolved or _polling_client(resolve_system(get_system(system_name), settings))
                if probe.incremental:
                    outcome.state[key], new = _since_probe(resolved, probe, state.get(key), now, max_pages, log)
                else:
                    outcome.state[key], marker = _snapshot_probe(resolved, probe, state.get(key), now, max_pages,
                                                                 log)
                    new = marker or []
            except Exception as exc:  # the ERP is down or refuses us: the next tick asks again
                outcome.errors.append(f"{system_name}/{key}: {redact(str(exc))[:400]}")
                continue
            changed += [f"{probe.name}:{item}" for item in new]
        if changed:
            outcome.announced[stream_name] = len(changed)
            event_id = _land(store, system_name, stream_name, sorted(changed), now,
                             resolved.mode if resolved is not None else None)
            if event_id:
                outcome.landed.append(event_id)
    return outcome


def _land(store: LandingStore, system_name: str, stream_name: str, changed: list[str], now: datetime,
          mode: str | None) -> str | None:
    """The notice, landed as a verified webhook would be; None when this very announcement was landed before, or
    when a notice for the stream still waits in `landing/`: the lane has not claimed it yet, so the read it causes
    comes after this change and sees it too (at most one notice per stream waits, however long the lane is away)."""
    prefix = f"poll-{stream_name}-"
    if any(ref.event_id.startswith(prefix) for ref in store.list("landing", provider=system_name)):
        return None
    event_id = safe_event_id(f"{prefix}{_digest([system_name, stream_name, changed])[:32]}")
    body = json.dumps({"source": SOURCE, "stream": stream_name, "changes": len(changed),
                       "changed": changed[:MAX_LISTED], "polled_at": now.isoformat()}, sort_keys=True).encode()
    document = envelope(system_name, event_id, f"{SOURCE}.{stream_name}", now, {"content-type": "application/json"},
                        body, verified_as=mode)
    return event_id if store.land(system_name, now.date().isoformat(), event_id, document) else None


def build_change_poll_sensors(systems: Sequence[System], settings: Settings,
                              config: ChangePollSettings | None = None) -> list[dg.SensorDefinition]:
    """One sensor per enabled ERP without webhooks (`<system>_change_poll`), running by default; none when
    IP_CHANGE_POLL_SECONDS is 0."""
    config = config or load_change_poll_settings()
    return [_sensor(name, settings, config) for name in config.systems([s.name for s in systems])]


def _sensor(system_name: str, settings: Settings, config: ChangePollSettings) -> dg.SensorDefinition:
    streams = ", ".join(f"{system_name}/{s}" for s in PROBES[system_name])

    @dg.sensor(name=f"{system_name}_change_poll", minimum_interval_seconds=config.change_poll_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Asks {system_name} (which sends no webhooks) what changed since the last tick and lands "
                           f"a change notice for {streams}; the event lane then reads it and runs the affected "
                           "syncs (IP_CHANGE_POLL_SECONDS).")
    def change_poll(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        state = json.loads(context.cursor) if context.cursor else {}
        outcome = poll_system(system_name, settings, open_landing_store(settings), state,
                              max_pages=config.change_poll_max_pages, log=context.log)
        for error in outcome.errors:
            context.log.error(f"change poll: {error}")
        if outcome.errors and len(outcome.errors) == outcome.probes:
            raise RuntimeError(f"{system_name} change poll: {outcome.summary()}")
        if outcome.landed:
            context.log.info(f"change poll: landed {', '.join(outcome.landed)} ({outcome.summary()})")
        return dg.SensorResult(skip_reason=outcome.summary(), cursor=json.dumps(outcome.state, sort_keys=True))

    return change_poll
