"""The event lane: one long-lived worker that carries landed events to the target systems within seconds.

Why a worker and not a run per batch: a Dagster run costs a sensor tick (the sensor daemon loops every 5 s at
best), a queue hop and a process that loads the code location (~3 s here) before any work starts; measured
from the outside that path took minutes under traffic, because the automation that rebuilt core waited for an
ingest run that was always in flight. The worker instead polls the landing folder every fraction of a second
and does, for each batch, what the event needs and nothing more:

    claim batch → apply events to raw tables (by version) → rebuild core (one transaction)
                → run the syncs whose sources changed, in dependency order → report what changed

Exactly once: one worker at a time (an exclusive lock file beside the landing store; the kernel frees it if the
worker dies), batches claimed by atomic renames, ingest by keyed upsert, and every sync under its own lock and
its ledger, so the nightly run's sync step and the lane never send the same record twice. Backpressure: files
stay in `landing/` until claimed, at most `batch_files` per batch; a burst is drained batch by batch.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

from ..connectors.redaction import redact
from ..connectors.registry import get_system
from ..connectors.runtime import resolve_system
from ..extraction import extract_stream
from ..locks import LockTimeoutError, exclusive
from ..settings import Settings
from ..syncs.engine import SyncResult, SyncSourceMissingError, run_sync
from ..syncs.ledger import ensure_ledger
from ..syncs.spec import SyncSpec
from ..warehouse.duckdb import Warehouse
from ..warehouse.models import BuildReport, build_committed, core_inputs
from .ingest import IngestResult, ingest_batch
from .landing import LandingStore

LANE_LOCK = "event-lane.lock"
EVENTS_KEY = ("webhooks", "events")


def lane_lock(store_root: Path) -> Path:
    return store_root / LANE_LOCK


@dataclass
class SyncOutcome:
    name: str
    seconds: float
    result: SyncResult | None = None
    skipped: str = ""  # the source does not exist yet
    error: str = ""


@dataclass
class BatchOutcome:
    batch: str
    ingest: IngestResult
    updated_keys: set[tuple[str, ...]] = field(default_factory=set)
    core: BuildReport | None = None
    core_seconds: float = 0.0
    syncs: list[SyncOutcome] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)  # streams read because a notice named them
    seconds: float = 0.0
    oldest_event_age: float = 0.0  # receiver → this batch's effects committed, for the oldest event in it

    def summary(self) -> str:
        i = self.ingest
        parts = [f"batch {self.batch}: {i.processed} of {i.files} events applied (+{i.inserted} ~{i.updated} "
                 f"={i.unchanged} stale {i.stale}; {len(i.failed)} failed)"]
        if self.refreshed:
            parts.append("notices: " + ", ".join(self.refreshed))
        if self.core is not None:
            changed = sum(1 for c in self.core.changes.values() if c.inserted or c.updated or c.deleted)
            parts.append(f"core rebuilt in {self.core_seconds:.2f} s ({changed} tables changed)")
        for s in self.syncs:
            if s.error:
                parts.append(f"sync {s.name} FAILED: {s.error}")
            elif s.skipped:
                parts.append(f"sync {s.name} waits for its source")
            elif s.result is not None:
                r = s.result
                parts.append(f"sync {s.name}: created {r.created}, updated {r.updated}, deleted {r.deleted}, "
                             f"failed {r.failed} ({s.seconds:.2f} s)")
        parts.append(f"{self.seconds:.2f} s; oldest event landed {self.oldest_event_age:.1f} s ago")
        return "; ".join(parts)


def affected_syncs(syncs: Sequence[SyncSpec], updated: set[tuple[str, ...]]) -> list[SyncSpec]:
    """The syncs that read something this batch changed, plus the syncs that depend on those; in an order where
    every sync comes after the syncs it depends on (the accounting customer before its invoice)."""
    chosen = {s.name for s in syncs if any(tuple(key) in updated for key in s.source_assets)}
    grew = True
    while grew:
        more = {s.name for s in syncs if s.name not in chosen and chosen.intersection(s.depends_on)}
        grew = bool(more)
        chosen |= more
    position = {s.name: i for i, s in enumerate(syncs)}
    by_name = {s.name: s for s in syncs if s.name in chosen}
    sorter = TopologicalSorter({name: [d for d in spec.depends_on if d in chosen] for name, spec in by_name.items()})
    try:
        sorter.prepare()
    except CycleError:  # the registry refuses cycles; should one slip through, keep the registry's order
        return list(by_name.values())
    ordered: list[SyncSpec] = []
    while sorter.is_active():  # wave by wave, each wave in the registry's order
        for name in sorted(sorter.get_ready(), key=position.__getitem__):
            ordered.append(by_name[name])
            sorter.done(name)
    return ordered


def direct_syncs(ordered: Sequence[SyncSpec]) -> list[SyncSpec]:
    """Of syncs in dependency order, those that read no core table and depend on no sync that does: they can
    run right after the events are applied, before any stream read or core rebuild."""
    direct: list[SyncSpec] = []
    names: set[str] = set()
    for spec in ordered:
        reads_core = any(key[0] == "core" for key in spec.source_assets)
        waits = any(d not in names for d in spec.depends_on if d in {s.name for s in ordered})
        if not reads_core and not waits:
            direct.append(spec)
            names.add(spec.name)
    return direct


def _age(received_at: Sequence[str], now: datetime) -> float:
    if not received_at:
        return 0.0
    return max(0.0, (now - min(datetime.fromisoformat(r) for r in received_at)).total_seconds())


class EventLane:
    """Claims and processes batches; the Dagster op around it decides how long to keep going."""

    def __init__(self, store: LandingStore, warehouse: Warehouse, settings: Settings, *,
                 systems: list[tuple[str, str]] | None, syncs: Sequence[SyncSpec], batch_files: int, run_id: str,
                 log: Any = None, sync_runner: Callable[..., SyncResult] = run_sync, sync_workers: int = 1) -> None:
        self.store, self.warehouse, self.settings = store, warehouse, settings
        self.systems, self.syncs, self.batch_files = systems, list(syncs), batch_files
        self.run_id, self.log, self.sync_runner = run_id, log, sync_runner
        self.sync_workers = max(1, sync_workers)
        self.ledger_ready = False  # the syncs' own tables exist (made once, before syncs first run side by side)
        self.deferred: dict[str, SyncSpec] = {}
        self.core_inputs = core_inputs()
        self.enabled = {name for name, _ in systems or []}

    def next_batch(self) -> str | None:
        """A batch left claimed by a worker that died (applied again: ingest is idempotent), else a new claim."""
        orphans = self.store.batches()
        if orphans:
            return orphans[0]
        batch = f"{int(time.time() * 1000):013d}-lane-{uuid.uuid4().hex[:6]}"
        return batch if self.store.claim(batch, limit=self.batch_files) else None

    def process(self, batch: str) -> BatchOutcome:
        started = time.monotonic()
        with self.warehouse.session():  # one connection for the whole batch (warehouse/duckdb.py says why)
            outcome = self._process(batch)
        outcome.seconds = time.monotonic() - started
        outcome.oldest_event_age = _age(outcome.ingest.received_at, datetime.now(UTC))
        return outcome

    def _process(self, batch: str) -> BatchOutcome:
        """Apply, then the syncs that read only what the events brought (a web-form lead waits for nothing
        else), then read the streams notices named, rebuild core if its inputs changed, and run the syncs that
        read core. Ordered so that the cheap, direct effects are not queued behind the costly ones."""
        ingest = ingest_batch(self.store, self.warehouse, self.settings.spool_dir, batch, self.run_id, log=self.log)
        outcome = BatchOutcome(batch=batch, ingest=ingest)
        if self.systems is None:  # ingest only (the webhook engine's own tests)
            return outcome
        outcome.updated_keys = self._raw_keys(ingest)
        direct = direct_syncs(affected_syncs(self.syncs, outcome.updated_keys))
        outcome.syncs += self._run_syncs(direct)
        done = {spec.name for spec in direct}
        for system, stream in sorted(ingest.refresh):  # a notice names a stream: read it through the read spec
            self._refresh(system, stream, outcome)
        outcome.updated_keys |= self._raw_keys(ingest)
        changed_inputs = self.core_inputs.intersection(ingest.changed_tables)
        if changed_inputs:  # notices and form posts leave core alone
            core_started = time.monotonic()
            with self.warehouse.connect() as con:  # only what the changed raw tables reach
                outcome.core = build_committed(con, self.systems, changed_raw=changed_inputs)
            outcome.core_seconds = time.monotonic() - core_started
            outcome.updated_keys |= {("core", t.split(".", 1)[1]) for t, c in outcome.core.changes.items()
                                     if c.inserted or c.updated or c.deleted}
        outcome.syncs += self._run_syncs([spec for spec in affected_syncs(self.syncs, outcome.updated_keys)
                                          if spec.name not in done])
        return outcome

    def _run_syncs(self, ordered: Sequence[SyncSpec]) -> list[SyncOutcome]:
        """Run syncs given in dependency order, up to `sync_workers` at once: a sync starts once the syncs it
        depends on (among these) are done and no other sync into its target system is running, so each vendor
        still sees one writer at the pace its spec allows. Why: a batch's syncs mostly wait on their targets'
        answers (~75 ms a record), and one after another they were ~8 s of a 12 s batch. Outcomes come back in
        the given order."""
        if self.sync_workers == 1 or len(ordered) < 2:
            return [self._sync(spec) for spec in ordered]
        if not self.ledger_ready:  # every sync creates the `sync` schema if missing; two doing it at once on a new
            with self.warehouse.connect() as con:  # warehouse is DuckDB's "Catalog write-write conflict" (seen in
                ensure_ledger(con)  # the demo's first minute: a lead sync failed and alerted), so it is made first
            self.ledger_ready = True
        names = {spec.name for spec in ordered}
        waiting = list(ordered)
        finished: dict[str, SyncOutcome] = {}
        running: dict[Future[SyncOutcome], SyncSpec] = {}
        with ThreadPoolExecutor(max_workers=self.sync_workers, thread_name_prefix="lane-sync") as pool:
            while waiting or running:
                busy_targets = {spec.target for spec in running.values()}
                for spec in list(waiting):
                    if len(running) >= self.sync_workers:
                        break
                    blocked = any(d in names and d not in finished for d in spec.depends_on)
                    if blocked or spec.target in busy_targets:
                        continue
                    waiting.remove(spec)
                    busy_targets.add(spec.target)
                    running[pool.submit(self._sync, spec)] = spec
                if not running:  # only if `ordered` was not in dependency order: keep going, one at a time
                    spec = waiting.pop(0)
                    finished[spec.name] = self._sync(spec)
                    continue
                completed, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in completed:
                    finished[running.pop(future).name] = future.result()
        return [finished[spec.name] for spec in ordered]

    def _refresh(self, system_name: str, stream_name: str, outcome: BatchOutcome) -> None:
        """Read one stream a notice named (incrementally; today's window for a stream partitioned by day) and
        count its changed rows as the batch's, so core and the syncs follow."""
        if system_name not in self.enabled:
            return
        started = time.monotonic()
        try:
            system = get_system(system_name)
            stream = system.stream(stream_name)
            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            daily = stream.partitioned == "daily"
            result = extract_stream(
                resolved=resolve_system(system, self.settings), stream=stream, warehouse=self.warehouse,
                settings=self.settings, run_id=self.run_id, window_start=today if daily else None,
                window_end=today + timedelta(days=1) if daily else None,
                partition_key=today.date().isoformat() if daily else None, log=self.log)
        except Exception as exc:  # the provider is down: the next notice or the nightly run reads it
            outcome.refreshed.append(f"{system_name}/{stream_name} not read: {redact(str(exc))[:300]}")
            return
        load = result.load
        if load.inserted or load.updated:
            outcome.ingest.changed_tables[load.table] = load.inserted + load.updated
        outcome.refreshed.append(f"{system_name}/{stream_name} read: +{load.inserted} ~{load.updated} "
                                 f"({time.monotonic() - started:.2f} s)")

    def _raw_keys(self, ingest: IngestResult) -> set[tuple[str, ...]]:
        keys: set[tuple[str, ...]] = set()
        for table in ingest.changed_tables:
            schema, stream = table.split(".", 1)
            system = schema.removeprefix("raw_")
            keys.add(EVENTS_KEY if (system, stream) == ("webhooks", "events") else (system, stream))
        return keys

    def _sync(self, spec: SyncSpec) -> SyncOutcome:
        started = time.monotonic()
        try:  # run_sync takes the sync's own lock, without waiting: we hold the warehouse for this batch
            result = self.sync_runner(spec, self.warehouse, self.settings, run_id=self.run_id, log=self.log,
                                      lock_timeout=0)
        except LockTimeoutError:  # the nightly step or the CLI runs it now: send ours once they are done
            self.deferred[spec.name] = spec
            return SyncOutcome(spec.name, time.monotonic() - started, skipped="busy in another run; retried shortly")
        except SyncSourceMissingError as exc:
            return SyncOutcome(spec.name, time.monotonic() - started, skipped=str(exc))
        except Exception as exc:  # one failing sync must not stop the lane or the other syncs
            return SyncOutcome(spec.name, time.monotonic() - started, error=redact(str(exc)))
        self.deferred.pop(spec.name, None)
        return SyncOutcome(spec.name, time.monotonic() - started, result=result)

    def retry_deferred(self) -> list[SyncOutcome]:
        """The syncs that were busy elsewhere when a batch wanted them, tried again (the lane calls this when no
        events are waiting, so a record changed by an event is not left for the nightly run)."""
        if not self.deferred:
            return []
        with self.warehouse.session():
            return [self._sync(spec) for spec in list(self.deferred.values())]


def hold_lane(store_root: Path, timeout: float) -> Any:
    """The single-worker lock; raises LockTimeoutError when another worker keeps it."""
    return exclusive(lane_lock(store_root), timeout=timeout)
