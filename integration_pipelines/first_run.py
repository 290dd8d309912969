"""The demo's first start: one run that catches up the sandbox's whole history, so the first picture is complete.

Why: the sandbox holds a month of business; without a catch-up the partitions view shows every day missing and
the first nightly run sees only yesterday. One run of the nightly job over the range of days (Dagster's
`dagster/asset_partition_range_*` tags, as a single-run backfill uses) reads each stream's window in one pass,
then builds core, syncs and reconciles, in about a minute on the demo world.
"""

from __future__ import annotations

from datetime import date

import httpx

from .schedules import NIGHTLY_JOB

LAUNCH = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on InvalidSubsetError { message } ... on RunConfigValidationInvalid { errors { message } } } }
"""


def launch_catch_up(ui_url: str, first: date, last: date, location: str = "integration_pipelines") -> str:
    """Launch the nightly job over `first`..`last` (inclusive); the run id. Raises RuntimeError if refused."""
    tags = {"dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
            "integration_pipelines/kind": "nightly", "integration_pipelines/first_run": "catch-up"}
    params = {"selector": {"repositoryLocationName": location, "repositoryName": "__repository__",
                           "jobName": NIGHTLY_JOB},
              "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]}}
    answer = httpx.post(f"{ui_url}/graphql", json={"query": LAUNCH, "variables": {"p": params}}, timeout=60)
    answer.raise_for_status()
    launched = answer.json()["data"]["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"the catch-up run was refused: {launched}")
    return str(launched["run"]["runId"])
