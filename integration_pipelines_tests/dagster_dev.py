"""Boot `dagster dev` and the demo's other processes for the end-to-end tests, drive the UI's GraphQL API, and
stop every process that was started. PYTEST_DONT_REWRITE (a plugin imported by its test modules first).

Why one module: booting `dagster dev` costs 20-60 s on a loaded 2-core CI machine, so the tests that only need
*a* running instance (the UI test, the concurrency test) share one session-scoped boot, `dagster_dev_stack`.
A test module uses it with `pytest_plugins = ["integration_pipelines_tests.dagster_dev"]`: loaded as a plugin,
the fixture has a single definition, so pytest boots once per session however many modules ask for it (a
fixture imported into two modules would be two definitions and two boots).

Every child runs in its own session (process group) with stdout+stderr in a log file; teardown stops each group
with SIGTERM, escalates to SIGKILL, and fails if anything of a group survives.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_pipelines.cli import group_alive
from integration_pipelines.connectors.registry import discover_systems
from integration_pipelines.sandbox.server import SandboxServer
from integration_pipelines.webhooks.testing import SECRET_ENV_NAMES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLI = [sys.executable, "-m", "integration_pipelines.cli"]
FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})
BOOT_TIMEOUT = 180.0
GROUP_EXIT_BOUND = 120.0
"""How long a process group may outlive its leader after SIGTERM before the harness calls it leaked."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without anything that configures this project (`IP_*`, every system's and every
    webhook secret's variables, `DAGSTER_HOME`): a developer's real credentials must never reach a test run."""
    prefixes = (*(f"{s.env_prefix}_" for s in discover_systems()), "IP_")
    source = os.environ if base is None else base
    return {k: v for k, v in source.items()
            if not k.startswith(prefixes) and k.upper() not in SECRET_ENV_NAMES and k != "DAGSTER_HOME"}


def prepare_home(home: Path) -> Path:
    """A DAGSTER_HOME holding the project's own instance config (pools, managed loggers), as `demo` makes."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    return home


class Processes:
    """Children started in their own process groups, each logging stdout and stderr to `<log_dir>/<name>.log`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, args: list[str], env: Mapping[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(args, env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.started.append((name, process))
        return process

    def log_text(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> list[Path]:
        return sorted(self.log_dir.glob("*.log"))

    def stop(self, grace: float = 60.0) -> None:
        """SIGTERM every group (last started first), SIGKILL what outlives `grace`, then insist all are gone."""
        survivors: list[str] = []
        for _, process in reversed(self.started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in reversed(self.started):
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            # the group may outlive its leader (dagster dev's webserver, daemon, code server, run workers). A run
            # worker the code server spawned after the first SIGTERM never received it, so the group is told again;
            # on a loaded 2-core CI machine a member took over 30 s to go (stop 27's CI). The bound catches a
            # process that never exits, not a slow exit.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + GROUP_EXIT_BOUND
            while group_alive(process.pid):
                if time.monotonic() > deadline:
                    survivors.append(name)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    break
                time.sleep(0.2)
        self.started.clear()
        if survivors:
            raise AssertionError(f"processes of {survivors} outlived SIGTERM by {GROUP_EXIT_BOUND:.0f} s "
                                 "and were killed")


def wait_http(url: str, process: subprocess.Popen[bytes], what: str, log: str | Path,
              timeout: float = BOOT_TIMEOUT) -> None:
    """Wait until `url` answers below 500, failing early (with the log's tail) if the process dies."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            text = Path(log).read_text(errors="replace") if Path(log).exists() else str(log)
            raise AssertionError(f"{what} exited with {process.returncode}:\n{text[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not answer {url} within {timeout:.0f} s")
        time.sleep(0.3)


# -- the UI's GraphQL API ------------------------------------------------------------------------------------

LAUNCH_RUN = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
LAUNCH_BACKFILL = """
mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status runs(limit: 100) { runId status } } } }"""
RUN_FIELDS = "runId status jobName creationTime startTime endTime tags { key value }"
RUN = f"query($id: ID!) {{ runOrError(runId: $id) {{ __typename ... on Run {{ {RUN_FIELDS} }} }} }}"
RUNS = f"""
query($f: RunsFilter, $limit: Int) {{ runsOrError(filter: $f, limit: $limit) {{
  ... on Runs {{ results {{ {RUN_FIELDS} }} }} ... on PythonError {{ message }} }} }}"""
EVENTS = """
query($id: ID!, $cursor: String) { logsForRun(runId: $id, afterCursor: $cursor, limit: 2000) {
  __typename ... on EventConnection { cursor hasMore events {
    __typename ... on MessageEvent { message timestamp stepKey eventType level }
    ... on ErrorEvent { error { message stack causes { message stack } } } } } } }"""


@dataclass
class DagsterDev:
    """A running `dagster dev`, driven as the UI drives it."""

    url: str

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    @cached_property
    def location(self) -> str:
        entries = self.gql("{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")
        return entries["workspaceOrError"]["locationEntries"][0]["name"]

    def launch_run(self, job: str, *, assets: list[list[str]] | None = None, partition: str | None = None,
                   tags: Mapping[str, str] | None = None, run_config: Mapping[str, Any] | None = None) -> str:
        selector: dict[str, Any] = {"repositoryLocationName": self.location, "repositoryName": "__repository__",
                                    "jobName": job}
        if assets is not None:
            selector["assetSelection"] = [{"path": path} for path in assets]
        all_tags = dict(tags or {})
        if partition is not None:
            all_tags["dagster/partition"] = partition
        params: dict[str, Any] = {"selector": selector,
                                  "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in all_tags.items()]}}
        if run_config is not None:
            params["runConfigData"] = dict(run_config)
        launched = self.gql(LAUNCH_RUN, p=params)["launchRun"]
        if launched["__typename"] != "LaunchRunSuccess":
            raise AssertionError(f"launchRun of {job} failed: {launched}")
        return launched["run"]["runId"]

    def launch_backfill(self, assets: list[list[str]], partitions: list[str]) -> str:
        launched = self.gql(LAUNCH_BACKFILL, p={
            "assetSelection": [{"path": path} for path in assets], "partitionNames": partitions,
            "fromFailure": False})["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise AssertionError(f"launchPartitionBackfill failed: {launched}")
        return launched["backfillId"]

    def run(self, run_id: str) -> dict[str, Any]:
        found = self.gql(RUN, id=run_id)["runOrError"]
        if found["__typename"] != "Run":
            raise AssertionError(f"no run {run_id}: {found}")
        return found

    def runs(self, *, job: str | None = None, tags: Mapping[str, str] | None = None,
             created_after: float | None = None, limit: int = 200) -> list[dict[str, Any]]:
        run_filter: dict[str, Any] = {}
        if job:
            run_filter["pipelineName"] = job
        if tags:
            run_filter["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if created_after is not None:
            run_filter["createdAfter"] = created_after
        return self.gql(RUNS, f=run_filter, limit=limit)["runsOrError"]["results"]

    def wait_run(self, run_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while True:
            status = self.run(run_id)["status"]
            if status in FINISHED:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} still {status} after {timeout:.0f} s")
            time.sleep(1)

    def wait_backfill(self, backfill_id: str, runs: int, timeout: float = 240, *,
                      finished: bool = True) -> list[dict[str, Any]]:
        """Wait until the backfill daemon has created `runs` runs and (unless `finished=False`) all ended."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.gql(BACKFILL, id=backfill_id)["partitionBackfillOrError"]
            if len(state["runs"]) == runs and not finished:
                return state["runs"]
            if (state["status"] != "REQUESTED" and len(state["runs"]) == runs
                    and all(r["status"] in FINISHED for r in state["runs"])):
                return state["runs"]
            if time.monotonic() > deadline:
                raise AssertionError(f"backfill {backfill_id} did not finish in {timeout:.0f} s: {state}")
            time.sleep(1)

    def wait_quiet(self, created_after: float, timeout: float = 180) -> list[dict[str, Any]]:
        """Wait until every run created after `created_after` has finished; returns them all."""
        deadline = time.monotonic() + timeout
        while True:
            runs = self.runs(created_after=created_after)
            if all(r["status"] in FINISHED for r in runs):
                return runs
            if time.monotonic() > deadline:
                pending = [(r["jobName"], r["status"]) for r in runs if r["status"] not in FINISHED]
                raise AssertionError(f"runs still in flight after {timeout:.0f} s: {pending}")
            time.sleep(1)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """Every event of a run, oldest first (paged as the UI pages them)."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = self.gql(EVENTS, id=run_id, cursor=cursor)["logsForRun"]
            if page["__typename"] != "EventConnection":
                raise AssertionError(f"logsForRun({run_id}): {page}")
            found += page["events"]
            cursor = page["cursor"]
            if not page["hasMore"]:
                return found

    def sensor_running(self, name: str, running: bool) -> None:
        selector = {"repositoryLocationName": self.location, "repositoryName": "__repository__", "sensorName": name}
        if running:
            self.gql("mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename } }", s=selector)
            return
        state = self.gql("query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { ... on Sensor { "
                         "sensorState { id selectorId } } } }", s=selector)["sensorOrError"]["sensorState"]
        self.gql("mutation($id: String, $sel: String) { stopSensor(id: $id, jobSelectorId: $sel) { __typename } }",
                 id=state["id"], sel=state["selectorId"])


def start_dagster_dev(processes: Processes, env: Mapping[str, str], cwd: Path, *,
                      module: str = "integration_pipelines.definitions", name: str = "dagster-dev") -> DagsterDev:
    """`dagster dev` on a free loopback port, as a user starts it; returns once `/server_info` answers."""
    port = free_port()
    process = processes.spawn(name, [str(BIN / "dagster"), "dev", "-m", module, "-h", "127.0.0.1", "-p", str(port)],
                              env, cwd)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/server_info", process, "dagster dev", processes.log_dir / f"{name}.log")
    return DagsterDev(url)


# -- the shared stack ------------------------------------------------------------------------------------------

SHARED_SYSTEMS = "stripe"
"""The shared stack enables one system: enough for runs, backfills and webhooks to compete for the warehouse,
and a nightly job of a handful of steps (every step is its own process under `dagster dev`)."""


@dataclass
class DevStack:
    """`dagster dev` plus the webhook receiver, sharing one data folder, one instance and one environment."""

    dev: DagsterDev
    env: dict[str, str]
    root: Path
    processes: Processes
    receiver_url: str
    sandbox_url: str
    started_at: float = field(default_factory=time.time)

    @property
    def data_dir(self) -> Path:
        return Path(self.env["IP_DATA_DIR"])

    @property
    def home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    @property
    def warehouse(self) -> Path:
        return self.data_dir / "warehouse.duckdb"


def stack_environment(root: Path, sandbox_url: str, receiver_port: int, **extra: str) -> dict[str, str]:
    """What every process of a test stack sees: the sandbox, a data folder under `root`, fast retries."""
    env = clean_environment()
    env.update({
        "DAGSTER_HOME": str(prepare_home(root / "dagster_home")),
        "IP_DATA_DIR": str(root / "data"),
        "IP_SANDBOX_URL": sandbox_url,
        "IP_PARTITIONS_START": "2026-03-01",
        "IP_SYNC_START": "2026-03-01",  # the sandbox world's history is what the syncs act on
        "IP_WAREHOUSE_LOCK_TIMEOUT_SECONDS": "120",
        "IP_WEBHOOK_PUBLIC_URL": f"http://127.0.0.1:{receiver_port}",
        "IP_WEBHOOK_SENSOR_INTERVAL_SECONDS": "1",
        "IP_WEBHOOK_LANE_IDLE_SECONDS": "5",  # the lane run ends soon after the test's last event
        "PYTHONUNBUFFERED": "1",
    })
    for system in discover_systems():
        env[f"{system.env_prefix}_BACKOFF_BASE_SECONDS"] = "0.01"
        env[f"{system.env_prefix}_BACKOFF_CAP_SECONDS"] = "0.05"
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def dagster_dev_stack(tmp_path_factory: pytest.TempPathFactory, sandbox_server: SandboxServer
                      ) -> Iterator[DevStack]:
    """One `dagster dev` (webserver, daemon, code server) and one webhook receiver for the session, on the
    session's sandbox, with the project's deploy/dagster.yaml (warehouse pool limit 1)."""
    root = tmp_path_factory.mktemp("dagster-dev-stack")
    receiver_port = free_port()
    env = stack_environment(root, sandbox_server.url, receiver_port, IP_ENABLED_SYSTEMS=SHARED_SYSTEMS)
    processes = Processes(root / "logs")
    try:
        receiver = processes.spawn("receiver", [*CLI, "webhooks", "serve", "--port", str(receiver_port)], env, root)
        dev = start_dagster_dev(processes, env, root)
        receiver_url = f"http://127.0.0.1:{receiver_port}"
        wait_http(f"{receiver_url}/healthz", receiver, "the webhook receiver", processes.log_dir / "receiver.log")
        yield DevStack(dev, env, root, processes, receiver_url, sandbox_server.url)
    finally:
        processes.stop()
