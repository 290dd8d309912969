"""Like a user in the UI: boot `dagster dev`, launch a run and a three-partition backfill through /graphql,
see both succeed, and stop every process that was started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import PARTITIONS, loaded_keys

PROJECT_ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DagsterUI:
    def __init__(self, url: str) -> None:
        self.url = url

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_run(self, run_id: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.gql("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                              id=run_id)["runOrError"]["status"]
            if status in {"SUCCESS", "FAILURE", "CANCELED"}:
                return status
            time.sleep(1)
        raise AssertionError(f"run {run_id} did not finish in {timeout} s")


@pytest.fixture
def dagster_ui(settings, tmp_path: Path) -> Iterator[DagsterUI]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home)}  # settings fixture already set IP_* for the sandbox
    log = (tmp_path / "dagster-dev.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-m", "integration_pipelines.definitions",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, with default signal handlers: SIGTERM stops it all
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (tmp_path / "dagster-dev.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "dagster dev did not answer /server_info within 180 s"
            time.sleep(0.5)
        yield DagsterUI(url)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
    # nothing of the process group (webserver, daemon, code servers) may survive
    deadline = time.monotonic() + 30
    while True:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError("dagster dev left processes behind after SIGTERM")
        time.sleep(0.5)


LAUNCH_RUN = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
LAUNCH_BACKFILL = """
mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status runs(limit: 10) { runId status } } } }"""


def test_launch_a_run_and_a_backfill_through_graphql(dagster_ui, settings, sandbox):
    location = dagster_ui.gql("{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")
    location_name = location["workspaceOrError"]["locationEntries"][0]["name"]

    launched = dagster_ui.gql(LAUNCH_RUN, p={
        "selector": {"repositoryLocationName": location_name, "repositoryName": "__repository__",
                     "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["stripe", "customers"]}]},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": PARTITIONS[-1]}]},
    })["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    assert dagster_ui.wait_run(launched["run"]["runId"]) == "SUCCESS"

    backfill = dagster_ui.gql(LAUNCH_BACKFILL, p={
        "assetSelection": [{"path": ["stripe", "charges"]}], "partitionNames": PARTITIONS, "fromFailure": False,
    })["launchPartitionBackfill"]
    assert backfill["__typename"] == "LaunchBackfillSuccess", backfill
    deadline = time.monotonic() + 240
    while True:
        state = dagster_ui.gql(BACKFILL, id=backfill["backfillId"])["partitionBackfillOrError"]
        if state["status"] not in {"REQUESTED"} and len(state["runs"]) == len(PARTITIONS) and all(
            r["status"] in {"SUCCESS", "FAILURE", "CANCELED"} for r in state["runs"]
        ):
            break
        assert time.monotonic() < deadline, f"backfill did not finish: {state}"
        time.sleep(1)
    assert [r["status"] for r in state["runs"]] == ["SUCCESS"] * len(PARTITIONS)
    # the three partitions together hold every charge the sandbox has, exactly once
    truth = sorted(o["id"] for o in sandbox.emulator("stripe").dump("charges"))
    assert loaded_keys(settings, "stripe", "charges") == truth
