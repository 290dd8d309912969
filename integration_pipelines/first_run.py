"""The demo's first start: one run that catches up the sandbox's whole history, so the first picture is complete.

Why: the sandbox holds a month of business; without a catch-up the partitions view shows every day missing and
the first nightly run sees only yesterday. One run of the nightly job over the range of days (Dagster's
`dagster/asset_partition_range_*` tags, as a single-run backfill uses) reads each stream's window in one pass,
then builds core, syncs and reconciles, in about a minute on the demo world.
"""

from __future__ import annotations

import contextlib
import time
from datetime import date

import httpx

from .schedules import NIGHTLY_JOB

LAUNCH = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }
"""


LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
CATCH_UP_RUNS = """query { runsOrError(filter: {tags: [{key: "integration_pipelines/first_run", value: "catch-up"}]}) {
  ... on Runs { results { runId } } } }"""


def _gql(ui_url: str, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
    answer = httpx.post(f"{ui_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout)
    answer.raise_for_status()
    return answer.json()["data"]


def wait_for_location(ui_url: str, location: str, timeout: float = 300) -> None:
    """The webserver answers before the code location is loaded; a launch before that waits (or times out)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, KeyError, TypeError):
            entries = _gql(ui_url, LOCATIONS)["workspaceOrError"]["locationEntries"]
            if any(e["name"] == location and e["loadStatus"] == "LOADED" for e in entries):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the code location {location} did not load within {timeout:.0f} s")
        time.sleep(1)


def existing_catch_up(ui_url: str) -> str | None:
    runs = _gql(ui_url, CATCH_UP_RUNS)["runsOrError"]["results"]
    return str(runs[0]["runId"]) if runs else None


def launch_catch_up(ui_url: str, first: date, last: date, location: str = "integration_pipelines") -> str:
    """Launch the nightly job over `first`..`last` (inclusive) once; the run id. Raises RuntimeError if refused.
    A launch whose answer was lost (a slow, loaded machine) is found again by its tag instead of repeated."""
    wait_for_location(ui_url, location)
    found = existing_catch_up(ui_url)
    if found:
        return found
    tags = {"dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
            "integration_pipelines/kind": "nightly", "integration_pipelines/first_run": "catch-up"}
    params = {"selector": {"repositoryLocationName": location, "repositoryName": "__repository__",
                           "jobName": NIGHTLY_JOB},
              "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}
    try:
        launched = _gql(ui_url, LAUNCH, {"p": params}, timeout=180)["launchRun"]
    except httpx.TimeoutException:
        found = existing_catch_up(ui_url)
        if found:
            return found
        raise
    if launched["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"the catch-up run was refused: {launched}")
    return str(launched["run"]["runId"])
