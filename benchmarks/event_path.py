"""The event path and the nightly job, measured on the running demo (`integration-pipelines demo --world messy`
on spare ports, its activity simulator on), from the outside, as a business sees them: for three scenarios, the
event as the vendor sends it, and its effect found through the target system's own API.

- S1 web-form lead → HubSpot contact (webhooks/probe.py `LeadProbe`: found by HubSpot's search API);
- S8 card payment → Odoo fulfillment order (webhooks/scenario_probes.py `PaymentProbe`: a Stripe charge, its
  signed `charge.succeeded`, found by Odoo's `sale.order` search_read on `client_order_ref = stripe:<charge>`);
- S12 Odoo stock count → Shopify level (`StockProbe`: a `stock.quant` count in Odoo and its webhook, found when
  Shopify's `inventory_levels.json` shows that count or a later one on the same SKU).

Phases, after the demo's first catch-up run:
- Floor, per scenario: what the path cannot avoid: the receiver's durable write of that event (a POST to the
  receiver) plus one direct API call to the same target (HubSpot contact create, Odoo sale.order create, Shopify
  inventory_levels/set), one after the other.
- Steady: the three scenarios at once, `rate` events/s in total split by RATE_SHARE; latency = POST sent → the
  effect found by its watcher (each scenario's own thread, polling its target every `poll_seconds`).
- Burst: `burst` events posted over 8 connections as fast as they go, mixed by BURST_SHARE and interleaved;
  the watchers run while the burst is sent, so early events are not timed from the end of the sending.
- Nightly: the `nightly_sync` job for yesterday launched through GraphQL while the steady mix keeps arriving:
  its wall time against the sum of its steps' own durations, and the events' latency while it runs.
Every event must reach its target (no starvation) and exactly once (S1: one contact per lead, S8: one order per
payment, S12: each SKU's shop level ends at the last count sent).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from integration_pipelines.sandbox.hubspot import SANDBOX_TOKEN
from integration_pipelines.webhooks.probe import LeadProbe, Sent, Traffic
from integration_pipelines.webhooks.scenario_probes import PaymentProbe, ProbeSetupError, StockProbe
from integration_pipelines_tests.dagster_dev import DagsterDev, clean_environment, free_port

from .harness import ROOT, temp_dir

STEP_STATS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime
  stepStats { stepKey status startTime endTime } } } }"""

SCENARIOS = ("S1", "S8", "S12")
TITLES = {"S1": "S1 web-form lead → HubSpot contact", "S8": "S8 card payment → Odoo fulfillment order",
          "S12": "S12 Odoo stock count → Shopify level"}
FLOORS = {"S1": "receiver write + direct HubSpot contact create",
          "S8": "receiver write + direct Odoo sale.order create",
          "S12": "receiver write + direct Shopify inventory_levels/set"}
#: The steady rate's split (docs/benchmarks.md says why): S12 gets the smallest share because Shopify lets an app
#: make 2 calls/s and the sandbox's one bucket per shop is shared by the sync's writes and the probe's reads.
RATE_SHARE = {"S1": 0.4, "S8": 0.4, "S12": 0.2}
#: The burst's mix: leads are what a campaign brings in bulk; payments and stock counts come in smaller waves.
BURST_SHARE = {"S1": 0.7, "S8": 0.2, "S12": 0.1}
STALL_SECONDS = 150.0  # waiting for the last events ends when none of them has been reached for this long


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return {"n": len(ordered), "p50": statistics.median(ordered), "p95": pick(0.95), "p99": pick(0.99),
            "max": ordered[-1]}


class Demo:
    """The demo on spare ports in a temp folder; stopped with SIGTERM like a user's Ctrl-C."""

    def __init__(self, root: Path, log: Path) -> None:
        self.ports = {"ui": free_port(), "sandbox": free_port(), "receiver": free_port()}
        env = clean_environment()
        env["PYTHONUNBUFFERED"] = "1"
        self.root = root
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "integration_pipelines.cli", "demo", "--world", "messy",
             "--port", str(self.ports["ui"]), "--sandbox-port", str(self.ports["sandbox"]),
             "--webhook-port", str(self.ports["receiver"]), "--data-dir", str(root)],
            env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.ui = DagsterDev(self.url("ui"))
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url('ui')}/server_info", timeout=5).status_code == 200:
                    break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the demo did not start; see {log}")
            time.sleep(1)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.25)


# -- the probes ---------------------------------------------------------------------------------------------
class Probes:
    """Makes a fresh probe per scenario and phase (its own tag); S8's customers and S12's SKUs are looked up
    once through the APIs. A scenario whose lookup fails is left out, and the report says why."""

    def __init__(self, demo: Demo) -> None:
        receiver, sandbox = demo.url("receiver"), demo.url("sandbox")
        self.receiver, self.sandbox = receiver, sandbox
        self.errors: dict[str, str] = {}
        self.payments = PaymentProbe(receiver, sandbox, "setup")
        self.stock = StockProbe(receiver, sandbox, "setup")
        with httpx.Client(timeout=30) as client:
            for name, probe in (("S8", self.payments), ("S12", self.stock)):
                try:
                    probe.prepare(client)
                except (ProbeSetupError, httpx.HTTPError, RuntimeError) as exc:
                    self.errors[name] = f"{type(exc).__name__}: {exc}"[:300]
        self.scenarios = [s for s in SCENARIOS if s not in self.errors]

    def make(self, scenario: str, phase: str) -> Any:
        tag = f"{phase}{uuid.uuid4().hex[:6]}"
        if scenario == "S1":
            return LeadProbe(self.receiver, self.sandbox, SANDBOX_TOKEN, tag)
        if scenario == "S8":
            return self.payments.share(tag)
        return self.stock.share(tag)


def poll_seconds(probe: Any) -> float:
    return float(getattr(probe, "poll_seconds", 0.25))


def once(scenario: str, probe: Any, client: httpx.Client) -> tuple[int, int, str]:
    """(events checked, events whose effect is there exactly once, what that means)."""
    if scenario == "S1":
        counts = probe.contacts_per_email(client)
        return len(counts), sum(1 for n in counts.values() if n == 1), "one HubSpot contact each"
    return probe.once(client)


class Watcher(threading.Thread):
    """Looks for one probe's pending events in its target every `poll_seconds` until stopped."""

    def __init__(self, probe: Any) -> None:
        super().__init__(daemon=True)
        self.probe, self.interval = probe, poll_seconds(probe)
        self.stopped = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stopped.is_set():
                try:
                    self.probe.look(client)
                except (httpx.HTTPError, RuntimeError) as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=30)


@dataclass
class Outcome:
    """One scenario in one phase."""

    scenario: str
    probe: Any
    sent: int = 0  # events the receiver accepted (2xx)
    refused: int = 0  # events the receiver answered with an error, or that could not be made or posted
    unreached: int = 0  # accepted, but their effect never showed while we waited
    errors: list[str] = field(default_factory=list)
    once: tuple[int, int, str] = (0, 0, "")  # the exactly-once check at the end of the phase (see `once`)

    @property
    def latencies(self) -> list[float]:
        return latencies(self.probe)


def latencies(probe: Any) -> list[float]:
    return [s.latency for s in probe.sent if isinstance(s, Sent) and s.latency is not None]


def drain(probes: dict[str, Any], timeout: float, stall: float = STALL_SECONDS) -> None:
    """Wait until every accepted event is reached, or `timeout`, or nothing more is reached for `stall` s (a
    scenario whose path is broken must not hold the others' figures hostage)."""
    deadline = time.monotonic() + timeout
    last_progress, reached = time.monotonic(), -1
    while True:
        pending = sum(len(p.pending()) for p in probes.values())
        if pending == 0:
            return
        now_reached = sum(len(latencies(p)) for p in probes.values())
        if now_reached != reached:
            reached, last_progress = now_reached, time.monotonic()
        if time.monotonic() > deadline or time.monotonic() - last_progress > stall:
            return
        time.sleep(0.5)


def _outcomes(probes: dict[str, Any], watchers: dict[str, Watcher], send_errors: dict[str, list[str]]
              ) -> dict[str, Outcome]:
    """Each scenario's counts, and its exactly-once check taken now: S12's must be (a later phase moves the same
    SKUs' levels on), S1's and S8's are taken again at the very end (a late duplicate would show then)."""
    out = {}
    client = httpx.Client(timeout=60)
    for name, probe in probes.items():
        accepted = [s for s in probe.sent if 200 <= s.status < 300]
        refused = [s for s in probe.sent if s.status and not 200 <= s.status < 300]
        out[name] = Outcome(name, probe, sent=len(accepted), refused=len(refused) + len(send_errors.get(name, [])),
                            unreached=len(probe.pending()),
                            errors=send_errors.get(name, [])[:3] + watchers[name].errors[:3])
        try:
            out[name].once = once(name, probe, client)
        except (httpx.HTTPError, RuntimeError) as exc:
            out[name].errors.append(f"exactly-once check: {type(exc).__name__}: {exc}"[:200])
    client.close()
    return out


def mixed_traffic(probes: Probes, phase: str, rate: float, keep_going: Callable[[], bool], drain_timeout: float
                  ) -> dict[str, Outcome]:
    """Every scenario at its share of `rate` at once, while `keep_going()`; then the last events drained."""
    made = {s: probes.make(s, phase) for s in probes.scenarios}
    watchers = {s: Watcher(p) for s, p in made.items()}
    traffic = {s: Traffic(p, rate=rate * RATE_SHARE[s]) for s, p in made.items()}
    for thread in [*watchers.values(), *traffic.values()]:
        thread.start()
    while keep_going():
        time.sleep(0.5)
    for t in traffic.values():
        t.stop()
    drain(made, drain_timeout)
    for w in watchers.values():
        w.stop()
    return _outcomes(made, watchers, {s: t.errors for s, t in traffic.items()})


def steady(probes: Probes, rate: float, seconds: float) -> dict[str, Outcome]:
    ends = time.monotonic() + seconds
    return mixed_traffic(probes, "steady", rate, lambda: time.monotonic() < ends, 300)


def burst_mix(count: int, scenarios: Sequence[str]) -> list[str]:
    """`count` scenario names by BURST_SHARE (over the scenarios available), interleaved evenly."""
    share = {s: BURST_SHARE[s] for s in scenarios}
    total = sum(share.values())
    counts = {s: int(count * share[s] / total) for s in scenarios}
    counts[scenarios[0]] += count - sum(counts.values())
    slots = [((k + 0.5) / counts[s], s) for s in scenarios for k in range(counts[s])]
    return [s for _, s in sorted(slots)]


def burst(probes: Probes, count: int) -> dict[str, Outcome]:
    made = {s: probes.make(s, "burst") for s in probes.scenarios}
    watchers = {s: Watcher(p) for s, p in made.items()}
    for w in watchers.values():
        w.start()
    plan = burst_mix(count, probes.scenarios)
    local = threading.local()
    clients: list[httpx.Client] = []
    errors: dict[str, list[str]] = {s: [] for s in made}

    def send(scenario: str) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=60)
            clients.append(client)
        try:
            made[scenario].send(client)
        except (httpx.HTTPError, RuntimeError) as exc:
            errors[scenario].append(f"{type(exc).__name__}: {exc}"[:200])

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, plan))
    finally:
        for client in clients:
            client.close()
    drain(made, 600)
    for w in watchers.values():
        w.stop()
    return _outcomes(made, watchers, errors)


def floor(probes: Probes, scenario: str, samples: int) -> list[float]:
    """Per event, in sequence: the receiver's durable write + one direct call to the target. S12's samples are
    spaced a second apart and half as many: each direct Shopify call spends the shop's 2 calls/s."""
    out: list[float] = []
    with httpx.Client(timeout=30) as client:
        if scenario == "S1":
            probe = LeadProbe(probes.receiver, probes.sandbox, SANDBOX_TOKEN, f"floor{uuid.uuid4().hex[:6]}")
            for n in range(samples):
                started = time.time()
                sent = probe.send(client)
                answer = client.post(f"{probes.sandbox}/crm/v3/objects/contacts",
                                     headers={"authorization": f"Bearer {SANDBOX_TOKEN}"},
                                     json={"properties": {"email": f"direct-{probe.tag}-{n}@example.test"}})
                if sent.status == 200 and answer.status_code in (200, 201):
                    out.append(time.time() - started)
            return out
        probe = probes.make(scenario, "floor")
        for _ in range(samples // 2 if scenario == "S12" else samples):
            try:
                elapsed = probe.floor_once(client)
            except (httpx.HTTPError, RuntimeError):
                elapsed = None
            if elapsed is not None:
                out.append(elapsed)
            if scenario == "S12":
                time.sleep(1.0)
    return out


def nightly(demo: Demo, probes: Probes, rate: float) -> tuple[dict[str, Any], dict[str, Outcome]]:
    """The nightly run for yesterday while the steady mix keeps arriving; its step stats and the events."""
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    launched: dict[str, str] = {}

    def running() -> bool:
        if not launched:  # launched once the traffic flows, so the run starts under load
            launched["id"] = demo.ui.launch_run("nightly_sync", partition=yesterday, tags={"benchmark": "nightly"})
        return demo.ui.run(launched["id"])["status"] not in ("SUCCESS", "FAILURE", "CANCELED")

    outcomes = mixed_traffic(probes, "night", rate, running, 300)
    stats = demo.ui.gql(STEP_STATS, id=launched["id"])["runOrError"]
    return stats, outcomes


def wait_for_catch_up(demo: Demo, timeout: float = 900) -> dict[str, Any]:
    """The demo's first run (the whole history) must be over before anything is measured."""
    def finished() -> bool:
        runs = demo.ui.runs(job="nightly_sync")
        return bool(runs) and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)

    _wait(finished, timeout, "the demo's catch-up run")
    run = demo.ui.runs(job="nightly_sync")[-1]
    return demo.ui.gql(STEP_STATS, id=run["runId"])["runOrError"]


LANE_NEEDLES = {"S1": ("form_leads_to_crm", "forms"), "S8": ("payments_to_odoo_fulfillment", "stripe"),
                "S12": ("inventory_to_shopify", "odoo/products")}


def lane_lines(demo: Demo, scenarios: Sequence[str], limit: int = 8) -> list[str]:
    """The event lane's batch lines (and errors) that mention these scenarios' syncs or streams, newest runs
    first: what the report shows when an event never reached its target."""
    needles = [n for s in scenarios for n in LANE_NEEDLES.get(s, ())] + ["FAILED", "failed in the event lane"]
    found: list[str] = []
    for run in demo.ui.runs(job="event_lane", limit=5):
        try:
            events = demo.ui.events(run["runId"])
        except Exception as exc:  # diagnostics must not fail the benchmark
            found.append(f"run {run['runId']}: events not read ({exc})"[:300])
            continue
        lines = [f"run {run['runId'][:8]} {run['status']}: {e.get('message', '')}" for e in events
                 if e.get("message") and any(n in e["message"] for n in needles)]
        found += lines[-limit:]
        if len(found) >= limit:
            break
    return [line[:600] for line in found[:limit]]


def run_all(minutes: float, rate: float, burst_size: int, floor_samples: int, logs: Path) -> dict[str, Any]:
    root = temp_dir("demo")
    demo = Demo(root / "data", logs / "demo.log")
    try:
        catch_up = wait_for_catch_up(demo)
        probes = Probes(demo)
        for name, error in probes.errors.items():
            print(f"  events: {name} left out: {error}", flush=True)
        floors = {s: floor(probes, s, floor_samples) for s in probes.scenarios}
        print("  events: floors " + ", ".join(f"{s} {len(v)}" for s, v in floors.items()), flush=True)
        phases: dict[str, dict[str, Outcome]] = {}
        phases["steady"] = steady(probes, rate, minutes * 60)
        print("  events: steady done " + _progress(phases["steady"]), flush=True)
        phases["burst"] = burst(probes, burst_size)
        print("  events: burst done " + _progress(phases["burst"]), flush=True)
        nightly_stats, phases["nightly"] = nightly(demo, probes, rate)
        print("  events: nightly done " + _progress(phases["nightly"]), flush=True)
        checks: dict[str, tuple[int, int, str]] = {}
        with httpx.Client(timeout=60) as client:
            for scenario in probes.scenarios:
                total = ok = 0
                meaning = ""
                for outcomes in phases.values():
                    if scenario in outcomes:
                        o = outcomes[scenario]
                        n, good, meaning = o.once if scenario == "S12" else once(scenario, o.probe, client)
                        total, ok = total + n, ok + good
                checks[scenario] = (total, ok, meaning)
        broken = [s for s in probes.scenarios if any(o[s].unreached for o in phases.values() if s in o)]
        lanes = demo.ui.runs(job="event_lane")
        return {"catch_up": catch_up, "floor": floors, "phases": phases, "nightly": nightly_stats,
                "once": checks, "setup_errors": probes.errors, "scenarios": probes.scenarios,
                "lane_runs": len(lanes), "lane_failures": sum(1 for r in lanes if r["status"] == "FAILURE"),
                "lane_lines": lane_lines(demo, broken) if broken else [],
                "shopify_throttled": sum(o["S12"].probe.throttled for o in phases.values() if "S12" in o),
                "demo_log": str(logs / "demo.log"), "data_dir": str(root / "data")}
    finally:
        demo.stop()


def _progress(outcomes: dict[str, Outcome]) -> str:
    return "; ".join(f"{s}: {o.sent} sent, {len(o.latencies)} reached, p99 {percentiles(o.latencies)['p99']:.1f} s"
                     for s, o in outcomes.items())


def step_sum(stats: dict[str, Any]) -> tuple[float, float, int]:
    """(run wall seconds, sum of step seconds, steps)."""
    steps = [s for s in stats.get("stepStats") or [] if s.get("startTime") and s.get("endTime")]
    wall = (stats.get("endTime") or 0) - (stats.get("startTime") or 0)
    return wall, sum(s["endTime"] - s["startTime"] for s in steps), len(steps)
