"""The event path and the nightly job, measured on the running demo (`integration-pipelines demo --world messy`
on spare ports, its activity simulator on), from the outside, as a business sees them.

- Floor: per event, what the path cannot avoid: the receiver's durable write (POST to the receiver) plus one
  direct API call to the target (a HubSpot contact create), one after the other.
- S1 steady: web-form leads at a steady rate; latency = POST sent → the contact found by HubSpot's search API.
- S1 burst: a burst of leads posted as fast as 8 connections allow; latency from each one's POST.
- Nightly: the `nightly_sync` job for yesterday, launched through GraphQL while leads keep arriving: its wall time
  against the sum of its steps' own durations, and the leads' latency while it runs.
Every lead must end in HubSpot exactly once (counted through the search API).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from integration_pipelines.sandbox.hubspot import SANDBOX_TOKEN
from integration_pipelines.webhooks.probe import LeadProbe, Sent, Traffic
from integration_pipelines_tests.dagster_dev import DagsterDev, clean_environment, free_port

from .harness import ROOT, temp_dir

STEP_STATS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime
  stepStats { stepKey status startTime endTime } } } }"""


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


def _all_found(probe: LeadProbe, client: httpx.Client, timeout: float) -> None:
    def done() -> bool:
        probe.look(client)
        return not probe.pending()

    _wait(done, timeout, "every lead found in HubSpot")


def _watch(probe: LeadProbe, client: httpx.Client, while_: Callable[[], bool]) -> None:
    while while_():
        probe.look(client)
        time.sleep(0.25)


def floor(demo: Demo, samples: int) -> list[float]:
    """Receiver write + a direct HubSpot create, per event, in sequence."""
    probe = LeadProbe(demo.url("receiver"), demo.url("sandbox"), SANDBOX_TOKEN, f"floor{uuid.uuid4().hex[:6]}")
    latencies = []
    with httpx.Client(timeout=30) as client:
        for n in range(samples):
            started = time.time()
            sent = probe.send(client)
            answer = client.post(f"{demo.url('sandbox')}/crm/v3/objects/contacts",
                                 headers={"authorization": f"Bearer {SANDBOX_TOKEN}"},
                                 json={"properties": {"email": f"direct-{probe.tag}-{n}@example.test"}})
            if sent.status == 200 and answer.status_code in (200, 201):
                latencies.append(time.time() - started)
    return latencies


def steady(demo: Demo, rate: float, seconds: float) -> LeadProbe:
    probe = LeadProbe(demo.url("receiver"), demo.url("sandbox"), SANDBOX_TOKEN, f"steady{uuid.uuid4().hex[:6]}")
    traffic = Traffic(probe, rate=rate)
    traffic.start()
    ends = time.monotonic() + seconds
    with httpx.Client(timeout=30) as client:
        _watch(probe, client, lambda: time.monotonic() < ends)
        traffic.stop()
        _all_found(probe, client, 300)
    return probe


def burst(demo: Demo, count: int) -> LeadProbe:
    probe = LeadProbe(demo.url("receiver"), demo.url("sandbox"), SANDBOX_TOKEN, f"burst{uuid.uuid4().hex[:6]}")
    clients = [httpx.Client(timeout=60) for _ in range(8)]
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: probe.send(clients[n % 8]), range(count)))
    finally:
        for client in clients:
            client.close()
    with httpx.Client(timeout=30) as client:
        _all_found(probe, client, 600)
    return probe


def nightly(demo: Demo, rate: float) -> tuple[dict[str, Any], LeadProbe]:
    """The nightly run for yesterday while leads keep arriving; its step stats and the leads' latencies."""
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    probe = LeadProbe(demo.url("receiver"), demo.url("sandbox"), SANDBOX_TOKEN, f"night{uuid.uuid4().hex[:6]}")
    traffic = Traffic(probe, rate=rate)
    traffic.start()
    run_id = demo.ui.launch_run("nightly_sync", partition=yesterday, tags={"benchmark": "nightly"})
    with httpx.Client(timeout=30) as client:
        _watch(probe, client, lambda: demo.ui.run(run_id)["status"] not in ("SUCCESS", "FAILURE", "CANCELED"))
        traffic.stop()
        _all_found(probe, client, 300)
    stats = demo.ui.gql(STEP_STATS, id=run_id)["runOrError"]
    return stats, probe


def exactly_once(probes: Sequence[LeadProbe], client: httpx.Client) -> tuple[int, int]:
    """(leads sent, leads held by exactly one HubSpot contact)."""
    sent = once = 0
    for probe in probes:
        counts = probe.contacts_per_email(client)
        sent += len(counts)
        once += sum(1 for n in counts.values() if n == 1)
    return sent, once


def latencies(probe: LeadProbe) -> list[float]:
    return [s.latency for s in probe.sent if isinstance(s, Sent) and s.latency is not None]


def wait_for_catch_up(demo: Demo, timeout: float = 900) -> dict[str, Any]:
    """The demo's first run (the whole history) must be over before anything is measured."""
    def finished() -> bool:
        runs = demo.ui.runs(job="nightly_sync")
        return bool(runs) and all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs)

    _wait(finished, timeout, "the demo's catch-up run")
    run = demo.ui.runs(job="nightly_sync")[-1]
    return demo.ui.gql(STEP_STATS, id=run["runId"])["runOrError"]


def run_all(minutes: float, rate: float, burst_size: int, floor_samples: int, logs: Path) -> dict[str, Any]:
    root = temp_dir("demo")
    demo = Demo(root / "data", logs / "demo.log")
    try:
        catch_up = wait_for_catch_up(demo)
        floor_latencies = floor(demo, floor_samples)
        steady_probe = steady(demo, rate, minutes * 60)
        burst_probe = burst(demo, burst_size)
        nightly_stats, nightly_probe = nightly(demo, rate)
        with httpx.Client(timeout=30) as client:
            sent, once = exactly_once([steady_probe, burst_probe, nightly_probe], client)
        lanes = demo.ui.runs(job="event_lane")
        return {"catch_up": catch_up, "floor": floor_latencies, "steady": latencies(steady_probe),
                "burst": latencies(burst_probe), "nightly": nightly_stats, "during_nightly": latencies(nightly_probe),
                "sent": sent, "exactly_once": once, "lane_runs": len(lanes),
                "lane_failures": sum(1 for r in lanes if r["status"] == "FAILURE")}
    finally:
        demo.stop()


def step_sum(stats: dict[str, Any]) -> tuple[float, float, int]:
    """(run wall seconds, sum of step seconds, steps)."""
    steps = [s for s in stats.get("stepStats") or [] if s.get("startTime") and s.get("endTime")]
    wall = (stats.get("endTime") or 0) - (stats.get("startTime") or 0)
    return wall, sum(s["endTime"] - s["startTime"] for s in steps), len(steps)
