"""`sync run` against a live target says so and asks first (issue 15), as a user runs it: the CLI in a subprocess.

The "real" HubSpot and Stripe are the emulators here, reached in live mode (`<SYSTEM>_BASE_URL` plus credentials),
and everything is extracted in live mode, so the only thing between the run and the writes is the question.
Without a terminal and without `--yes` the run refuses at once (exit 2) instead of waiting for an answer nobody
can give; a terminal (a pseudo-terminal here) gets a y/N question; `--yes` skips it. A sandbox target never asks.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

import pytest

from integration_pipelines.connectors.registry import discover_systems, get_system
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.warehouse.models import build_all

from .conftest import materialize_all_partitions, warehouse_rows

# credentials, secrets and provenance (docs/security.md): part of the reliability suite, `pytest -m reliability`
pytestmark = pytest.mark.reliability

CLI = [sys.executable, "-m", "integration_pipelines.cli"]
NAME = "payment_status_to_hubspot"


def run_cli(*args: str, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run([*CLI, *args], env={**os.environ, "COLUMNS": "200"}, stdin=stdin, capture_output=True,
                          text=True, timeout=180)


def run_on_terminal(answer: str, *args: str) -> tuple[int, str]:
    """The CLI with a pseudo-terminal as stdin (a person at a terminal), answering `answer` once it asks."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([*CLI, *args], env={**os.environ, "COLUMNS": "200"}, stdin=follower,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(follower)
    try:
        os.write(leader, answer.encode() + b"\n")  # the terminal holds the line until the question reads it
        out, err = process.communicate(timeout=180)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    return process.returncode, out + err


def hubspot_writes(sandbox) -> list[dict]:  # type: ignore[no-untyped-def]
    return [r for r in sandbox.state.request_log("hubspot") if r["method"] in {"POST", "PUT", "PATCH", "DELETE"}]


def extract_and_build(settings) -> None:  # type: ignore[no-untyped-def]
    for system in ("stripe", "hubspot"):
        for stream in get_system(system).streams:
            materialize_all_partitions(settings, system, stream.name)
    with Warehouse(settings.warehouse_database).connect() as con:
        con.execute("BEGIN")
        build_all(con, [(s.name, s.category) for s in discover_systems()])
        con.execute("COMMIT")


@pytest.fixture
def live_hubspot(settings, sandbox, sandbox_server, monkeypatch):  # type: ignore[no-untyped-def]
    """Stripe and HubSpot live (the emulators stand in for the real services), extracted live, core built."""
    monkeypatch.setenv("STRIPE_BASE_URL", sandbox_server.url)
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_FAKE_sandbox_key_integration_pipelines")
    monkeypatch.setenv("HUBSPOT_BASE_URL", sandbox_server.url)
    monkeypatch.setenv("HUBSPOT_TOKEN", "pat-FAKE-sandbox-read-write-0000")
    extract_and_build(settings)
    assert warehouse_rows(settings, "SELECT DISTINCT source_mode FROM ops.extract_log") == [("live",)]
    sandbox.state.clear_requests()
    return sandbox_server.url


def test_a_live_target_without_a_terminal_refuses_at_once_naming_yes(live_hubspot, sandbox, settings):
    started = time.monotonic()
    refused = run_cli("sync", "run", NAME)
    assert refused.returncode == 2, refused.stderr
    assert time.monotonic() - started < 60, "it must not wait for an answer"
    paragraph = " ".join(refused.stderr.split())
    host = live_hubspot.removeprefix("http://")
    assert (f"sync {NAME} writes to the real HubSpot ({host}), not its sandbox: the write credentials in "
            "HUBSPOT_TOKEN.") in paragraph
    assert "there is no terminal to ask on" in paragraph and "--yes" in paragraph
    assert f"integration-pipelines sync plan {NAME}" in paragraph
    assert "Traceback" not in refused.stderr and "pat-FAKE-sandbox-read-write-0000" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) <= 6, "one paragraph"
    assert hubspot_writes(sandbox) == []


def test_at_a_terminal_no_sends_nothing_and_yes_sends(live_hubspot, sandbox):
    code, said = run_on_terminal("n", "sync", "run", NAME)
    assert code == 1, said
    assert "writes to the real HubSpot" in said and "Send to the real HubSpot? [y/N]" in said
    assert "Nothing was sent." in said
    assert hubspot_writes(sandbox) == []

    code, said = run_on_terminal("y", "sync", "run", NAME)
    assert code == 0, said
    assert "created " in said and hubspot_writes(sandbox), "confirmed: the sync ran and wrote"


def test_yes_skips_the_question_and_says_it_was_confirmed(live_hubspot, sandbox):
    done = run_cli("sync", "run", NAME, "--yes")
    assert done.returncode == 0, done.stderr
    assert "writes to the real HubSpot" in done.stderr and "Confirmed by --yes." in done.stderr
    assert hubspot_writes(sandbox)
    assert "created " in done.stdout


def test_a_sandbox_target_needs_no_confirmation(settings, sandbox):
    extract_and_build(settings)
    sandbox.state.clear_requests()
    done = run_cli("sync", "run", NAME)  # stdin is not a terminal, and no --yes: the sandbox needs neither
    assert done.returncode == 0, done.stderr
    assert "writes to the real" not in done.stderr and "--yes" not in done.stderr
    assert hubspot_writes(sandbox)


def test_a_dry_run_never_asks(live_hubspot, sandbox):
    planned = run_cli("sync", "plan", NAME)
    assert planned.returncode == 0, planned.stderr
    assert "writes to the real" not in planned.stderr
    assert hubspot_writes(sandbox) == []
