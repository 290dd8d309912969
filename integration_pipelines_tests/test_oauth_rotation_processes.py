"""Credentials that last (issue 15): a live-mode Xero or QuickBooks connection keeps working across many separate
OS processes and a day of (emulated) time, because every rotated refresh token is stored the moment it is issued
and the next process presents it instead of the environment's consumed one.

Each system runs in *live* mode against its emulator: the app's client id and secret are obviously fake values the
emulator registers, and the refresh token comes from `connect()` (the user connecting the app), so it follows the
vendor's rotation rules strictly, unlike the sandbox's standing seed token. Every run is a fresh Python process
that reads one stream into its own warehouse file; between runs the emulator's clock moves on by hours, so the
access token of the previous process has long expired (Xero 30 minutes, QuickBooks 60).

Expected values are worked out by hand from the vendors' rules (docs/credentials.md):
- Xero rotates on every refresh: one refresh per process, each presenting the token the previous refresh
  returned; no token is ever presented twice.
- QuickBooks answers with the same refresh token for 24 hours and with a new one after that; the old one works
  until the new one is first used. Runs at 0 h, 6 h, 12 h, 25 h, 30 h and 50 h therefore present R0, R0, R0, R0
  (answered with a new R1), R1, R1 (answered with R2).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from integration_pipelines.connectors.quickbooks import SYSTEM as QUICKBOOKS
from integration_pipelines.connectors.runtime import _rebase
from integration_pipelines.connectors.token_store import TokenStore
from integration_pipelines.connectors.xero import SYSTEM as XERO
from integration_pipelines.sandbox.quickbooks import QuickBooksEmulator
from integration_pipelines.sandbox.xero import XeroEmulator

from .dagster_dev import clean_environment

pytestmark = [pytest.mark.slow, pytest.mark.reliability]  # some 20 Python processes, about two minutes

HOUR = 3600.0
KEY = "FAKE-token-store-key-for-tests-only-7c1d"
XERO_CLIENT = ("FAKE-live-xero-client-id-1234567890ABCDEF", "FAKE-live-xero-client-secret-do-not-use-0001")
QB_CLIENT = ("ABFAKEliveQuickBooksClientId00000000000000000000", "FAKEliveQuickBooksClientSecret000000000")

# One run: read a stream into its own warehouse (so concurrent runs never wait for each other's DuckDB file);
# a `go` file, when named, makes every process start its read at the same moment.
RUN = """
import json, os, sys, time, uuid
from pathlib import Path
from integration_pipelines.connectors.runtime import _rebase
from integration_pipelines.connectors.registry import get_system
from integration_pipelines.connectors.runtime import resolve_system
from integration_pipelines.extraction import extract_stream
from integration_pipelines.settings import Settings
from integration_pipelines.warehouse.duckdb import Warehouse
system_name, stream_name, warehouse, go = sys.argv[1:5]
settings = Settings()
system = get_system(system_name)
resolved = resolve_system(system, settings)
if go != "-":
    while not Path(go).exists():
        time.sleep(0.01)
result = extract_stream(resolved=resolved, stream=system.stream(stream_name), warehouse=Warehouse(warehouse),
                        settings=settings, run_id=uuid.uuid4().hex, full_refresh=True)
print(json.dumps({"mode": resolved.mode, "records": result.records}))
"""


def _environment(settings, system, client: tuple[str, str], refresh_token: str, extra: dict[str, str],
                 key: str | None = KEY) -> dict[str, str]:
    env = clean_environment()
    env.update({"IP_DATA_DIR": str(settings.data_dir), "IP_SANDBOX_URL": settings.sandbox_url, **extra})
    prefix = system.env_prefix
    values = system.values
    env[values["client_id"].env], env[values["client_secret"].env] = client
    env[values["refresh_token"].env] = refresh_token
    env[f"{prefix}_BASE_URL"] = settings.sandbox_url
    env[f"{prefix}_TOKEN_URL"] = _rebase(system.auth.token_url, settings.sandbox_url)
    env[f"{prefix}_REQUESTS_PER_SECOND"] = "1000"
    if key:
        env["IP_TOKEN_STORE_KEY"] = key
    return env


def _start(env: dict[str, str], system: str, stream: str, warehouse: Path, go: Path | None = None
           ) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", RUN, system, stream, str(warehouse), str(go or "-")], env=env,
                            cwd=str(warehouse.parent), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen[str]) -> dict:
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _run(env, system: str, stream: str, tmp_path: Path, n: int) -> dict:
    return _finish(_start(env, system, stream, tmp_path / f"run-{n}.duckdb"))


def _xero(sandbox) -> XeroEmulator:
    return sandbox.emulator("xero")  # type: ignore[return-value]


def _quickbooks(sandbox) -> QuickBooksEmulator:
    return sandbox.emulator("quickbooks")  # type: ignore[return-value]


def _store(settings, system: str, key: str | None = KEY) -> TokenStore:
    return TokenStore(system, settings.data_dir / "secrets" / "tokens", key)


def _xero_env(settings, refresh_token: str, **kwargs) -> dict[str, str]:
    return _environment(settings, XERO, XERO_CLIENT, refresh_token,
                        {"XERO_TENANT_ID": XERO.values["tenant_id"].sandbox}, **kwargs)


def _quickbooks_env(settings, refresh_token: str, **kwargs) -> dict[str, str]:
    return _environment(settings, QUICKBOOKS, QB_CLIENT, refresh_token,
                        {"QUICKBOOKS_REALM_ID": QUICKBOOKS.values["realm_id"].sandbox}, **kwargs)


def test_xero_live_connection_lasts_a_day_of_separate_processes(settings, sandbox, tmp_path):
    emulator = _xero(sandbox)
    initial = emulator.connect(*XERO_CLIENT)
    env = _xero_env(settings, initial)
    contacts = len(emulator.dump("contacts"))
    offsets = [0.0, 0.25, 3.0, 3.0, 5.0, 4.0, 6.0, 2.5]  # hours between runs: 23.75 h in all
    for n, hours in enumerate(offsets):
        emulator.advance_clock(hours * HOUR)
        assert _run(env, "xero", "contacts", tmp_path, n) == {"mode": "live", "records": contacts}

    presented = emulator.refresh_tokens_presented
    assert len(presented) == len(offsets), "one refresh per process"
    assert presented[0] == initial and len(set(presented)) == len(presented), "every refresh presented a new token"
    assert emulator.consumed_refresh_tokens_presented == [], "no rotated-out token was ever presented again"
    grant = emulator.refresh_tokens[initial].grant
    unused = [t for t, k in emulator.refresh_tokens.items() if k.grant == grant and k.consumed_at is None]
    assert len(unused) == 1 and unused[0] not in presented
    # every presented token after the first is the one the refresh before it returned (issued in that order)
    issued_at = [emulator.refresh_tokens[t].issued_at for t in presented]
    assert issued_at == sorted(issued_at)

    store = _store(settings, "xero")
    assert store.load(initial).refresh_token == unused[0], "the newest token is the stored one"
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    text = store.path.read_text()
    assert unused[0] not in text and initial not in text and json.loads(text)["encrypted"] is True


def test_xero_two_processes_refreshing_at_once_both_succeed(settings, sandbox, tmp_path):
    emulator = _xero(sandbox)
    initial = emulator.connect(*XERO_CLIENT)
    env = _xero_env(settings, initial)
    sandbox.set_faults("xero", latency_ms=400)  # a slow token endpoint: the second process waits for the lock
    go = tmp_path / "go"
    runs = [_start(env, "xero", "contacts", tmp_path / f"parallel-{n}.duckdb", go) for n in range(2)]
    time.sleep(0.2)
    go.touch()
    results = [_finish(run) for run in runs]
    contacts = len(emulator.dump("contacts"))
    assert results == [{"mode": "live", "records": contacts}] * 2
    first, second = emulator.refresh_tokens_presented
    assert first == initial and second != initial, "the process that waited presented the winner's new token"
    assert emulator.consumed_refresh_tokens_presented == []

    sandbox.clear_faults()
    emulator.advance_clock(2 * HOUR)
    assert _run(env, "xero", "contacts", tmp_path, 9)["records"] == contacts  # and the lineage goes on
    assert emulator.consumed_refresh_tokens_presented == []


def test_a_new_refresh_token_in_the_environment_wins_over_the_stored_one(settings, sandbox, tmp_path):
    emulator = _xero(sandbox)
    first = emulator.connect(*XERO_CLIENT)
    _run(_xero_env(settings, first), "xero", "contacts", tmp_path, 0)
    emulator.revoke_grants()  # the app was disconnected; the operator reconnects it and pastes the new token
    reconnected = emulator.connect(*XERO_CLIENT)
    emulator.advance_clock(HOUR)
    _run(_xero_env(settings, reconnected), "xero", "contacts", tmp_path, 1)
    emulator.advance_clock(HOUR)
    _run(_xero_env(settings, reconnected), "xero", "contacts", tmp_path, 2)
    presented = emulator.refresh_tokens_presented
    assert presented[:2] == [first, reconnected] and presented[2] not in (first, reconnected)
    assert emulator.consumed_refresh_tokens_presented == []


def test_a_wrong_or_missing_key_is_refused_readably_and_nothing_is_presented(settings, sandbox, tmp_path):
    emulator = _xero(sandbox)
    initial = emulator.connect(*XERO_CLIENT)
    _run(_xero_env(settings, initial), "xero", "contacts", tmp_path, 0)
    stored = _store(settings, "xero").load(initial).refresh_token
    for n, key in enumerate(["FAKE-wrong-token-store-key-0000", None], start=1):
        process = _start(_xero_env(settings, initial, key=key), "xero", "contacts", tmp_path / f"bad-{n}.duckdb")
        out, err = process.communicate(timeout=180)
        assert process.returncode != 0
        assert "IP_TOKEN_STORE_KEY" in err and "xero" in err
        assert "cannot be decrypted" in err if key else "is not set" in err
        for secret in (initial, stored, XERO_CLIENT[1], KEY, key or KEY):
            assert secret not in err + out
    assert emulator.refresh_tokens_presented == [initial], "the consumed environment token was never presented"


def test_quickbooks_live_connection_lasts_two_days_of_separate_processes(settings, sandbox, tmp_path):
    emulator = _quickbooks(sandbox)
    r0 = emulator.connect(*QB_CLIENT)
    env = _quickbooks_env(settings, r0)
    active = len([c for c in emulator.dump("customers") if c.get("Active", True)])
    at_hours = [0, 6, 12, 25, 30, 50]
    now = 0.0
    for n, hours in enumerate(at_hours):
        emulator.advance_clock((hours - now) * HOUR)
        now = hours
        assert _run(env, "quickbooks", "customers", tmp_path, n) == {"mode": "live", "records": active}
    presented = emulator.refresh_tokens_presented
    r1 = presented[4]
    assert presented == [r0, r0, r0, r0, r1, r1] and r1 != r0
    assert emulator.superseded_refresh_tokens_presented == []
    assert emulator.refresh_tokens[r0].dead, "R0 was refused once R1 had been used"
    r2 = emulator.refresh_tokens[r1].successor
    assert r2 is not None and _store(settings, "quickbooks").load(r0).refresh_token == r2
