"""Crash consistency: the run process is killed with SIGKILL in the middle of a load, a sync batch and a webhook
burst; after a restart and a rerun, DuckDB, the sync ledger and the target systems hold exactly what they should.

Every run here is a real, separate process: a `python -c` that materializes one asset with Dagster against the
test's settings (the same environment variables, the same DuckDB file), talking to the session sandbox over HTTP on
loopback; the webhook receiver is `integration-pipelines webhooks serve` in its own process. "In the middle" is
made deterministic with nothing but what production meets anyway: sandbox latency keeps a read or a write in
flight, the sandbox request log and the spool folder show how far the run got, and holding the DuckDB file the way
a BI tool would parks the run exactly between "the target accepted the write" and "the ledger recorded it". Each
child runs in its own process group, and the whole group is killed in teardown, so nothing outlives a failed test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import httpx
import psutil
import pytest

from integration_pipelines.connectors.reader import parse_cursor
from integration_pipelines.sandbox.app import Sandbox
from integration_pipelines.sandbox.salesforce import stamp
from integration_pipelines.settings import Settings
from integration_pipelines.syncs.engine import SyncFailedError
from integration_pipelines.webhooks.landing import LocalLandingStore
from integration_pipelines.webhooks.simulator import Delivery, deliver
from integration_pipelines.webhooks.testing import scrubbed_environment_names

from . import test_sync_payments_to_odoo_fulfillment as odoo_scenario
from .conftest import ANCHOR, loaded_keys, materialize_all_partitions, materialize_stream, warehouse_rows
from .test_core_models import build
from .test_sync_won_deals_to_accounting import (
    TARGETS,
    _customers,
    _email,
    _invoices_for,
    _plant_won_deal,
    prepare,
    won_deals,
)
from .test_syncs import sync
from .test_webhooks_e2e import stripe_event
from .test_webhooks_ingest import Env

pytestmark = pytest.mark.reliability

T = TypeVar("T")

RUN_ASSET = """
import sys

import dagster as dg

from integration_pipelines.resources import WarehouseResource
from integration_pipelines.settings import Settings

kind, name, stream = sys.argv[1], sys.argv[2], sys.argv[3]
settings = Settings()
if kind == "extract":
    from integration_pipelines.assets.extract import build_extract_asset
    from integration_pipelines.connectors.registry import get_system

    system = get_system(name)
    asset = build_extract_asset(system, system.stream(stream), settings)
else:
    from integration_pipelines.assets.syncs import build_sync_asset
    from integration_pipelines.syncs.registry import get_sync

    asset = build_sync_asset(get_sync(name), settings)
warehouse = WarehouseResource(database=settings.warehouse_database,
                              lock_timeout_seconds=settings.warehouse_lock_timeout_seconds)
result = dg.materialize([asset], resources={"warehouse": warehouse})
print("RUN SUCCEEDED" if result.success else "RUN FAILED", flush=True)
"""
"""The run process: one asset, materialized by Dagster in a fresh interpreter, configured only by the environment."""

WAITING_FOR_LOCK = re.compile(r"warehouse .* lock", re.IGNORECASE)
"""What the run logs while another process holds the DuckDB file (`Warehouse.connect`)."""


# -- processes ----------------------------------------------------------------------------------------------------
@dataclass
class Child:
    """A process started in its own session (process group), its output in a file for polling and diagnostics."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole process group: no handler, no cleanup, no flush: a power cut for this run."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def finish(self, timeout: float = 120) -> str:
        """Wait for a run that must succeed; its output on failure says why."""
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not finish in {timeout:.0f} s:\n{self.tail()}")
        output = self.output()
        assert code == 0 and "RUN SUCCEEDED" in output, f"{self.name} exited {code}:\n{self.tail()}"
        return output


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Start children in new sessions; teardown SIGKILLs every group still alive, so no child outlives a test."""
    started: list[Child] = []

    def start(name: str, args: list[str], **env: str) -> Child:
        log = tmp_path / f"{name}-{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **env}, cwd=tmp_path, start_new_session=True)
        child = Child(name, process, log)
        started.append(child)
        return child

    yield start
    for child in started:
        if child.process.poll() is None:
            child.kill()


def run_asset(spawn: Callable[..., Child], kind: str, name: str, stream: str = "-", **env: str) -> Child:
    return spawn(f"{kind}-{name}", [sys.executable, "-c", RUN_ASSET, kind, name, stream], **env)


def wait_for(condition: Callable[[], T], what: str, *, timeout: float = 60, watch: Child | None = None) -> T:
    """Poll until `condition()` is truthy; fail early, with its output, if the watched process exits first."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if watch is not None and watch.process.poll() is not None:
            pytest.fail(f"{watch.name} exited ({watch.process.returncode}) before {what}:\n{watch.tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}"
                        + (f":\n{watch.tail()}" if watch is not None else ""))
        time.sleep(0.005)


def _connect_unless_locked(database: str) -> duckdb.DuckDBPyConnection | None:
    try:
        return duckdb.connect(database)
    except duckdb.Error as exc:
        if "lock" not in str(exc).lower():
            raise
        return None


@contextlib.contextmanager
def holding_the_warehouse(database: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """Hold DuckDB's file lock as a BI tool or a notebook would: the run's next warehouse write waits for it."""
    con = wait_for(lambda: _connect_unless_locked(database), "the warehouse file lock", timeout=30)
    try:
        yield con
    finally:
        con.close()


def assert_warehouse_opens_for_writing(settings: Settings) -> None:
    """The killed run left no lock behind (DuckDB's lock dies with its process) and a file that opens and
    replays its WAL: a writer gets in at once, not after the lock timeout."""
    con = wait_for(lambda: _connect_unless_locked(settings.warehouse_database),
                   "the warehouse to open after the kill", timeout=5)
    try:
        assert con.execute("SELECT count(*) FROM ops.stream_state").fetchone() is not None
        con.execute("CHECKPOINT")
    finally:
        con.close()


# -- 1. a load ----------------------------------------------------------------------------------------------------
STREAM = ("quickbooks", "invoices")


def stream_state(settings: Settings) -> str | None:
    rows = warehouse_rows(settings, "SELECT cursor FROM ops.stream_state WHERE system = ? AND stream = ? "
                                    "AND state_key = 'all'", list(STREAM))
    return rows[0][0] if rows else None


def raw_snapshots(settings: Settings) -> dict[str, str]:
    return dict(warehouse_rows(settings, f"SELECT _pk, _raw FROM raw_{STREAM[0]}.{STREAM[1]}"))


def extract_log_count(settings: Settings) -> int:
    return warehouse_rows(settings, "SELECT count(*) FROM ops.extract_log WHERE system = ? AND stream = ?",
                          list(STREAM))[0][0]


def spooled_parts(settings: Settings) -> list[Path]:
    return sorted(settings.spool_dir.rglob("*.parquet")) if settings.spool_dir.exists() else []


def query_requests(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [r for r in sandbox.state.request_log(STREAM[0]) if r["method"] == "GET" and r["path"].endswith("/query")]


def assert_exactly_the_api_records_and_a_matching_cursor(settings: Settings, sandbox: Sandbox) -> None:
    """Every record the API holds, once, as the API holds it now; the cursor is the newest row's cursor value."""
    truth = {str(r["Id"]): r for r in sandbox.emulator(STREAM[0]).dump(STREAM[1])}
    assert loaded_keys(settings, *STREAM) == sorted(truth)  # no loss, no duplicate
    for key, raw in raw_snapshots(settings).items():
        assert json.loads(raw)["MetaData"] == truth[key]["MetaData"], f"invoice {key} is a stale snapshot"
    cursors = [parse_cursor(c, "iso") for (c,) in warehouse_rows(
        settings, f"SELECT _cursor FROM raw_{STREAM[0]}.{STREAM[1]}")]
    assert parse_cursor(stream_state(settings), "iso") == max(c for c in cursors if c is not None)


@pytest.fixture
def touched_invoices(settings: Settings, sandbox: Sandbox) -> dict[str, Any]:
    """A loaded stream, then 25 invoices edited in the books: the next incremental read (from the stored cursor,
    minus the stream's lookback) is at least 25 records, several pages at a page size of 5."""
    materialize_stream(settings, *STREAM)
    before = {"rows": raw_snapshots(settings), "cursor": stream_state(settings),
              "logged": extract_log_count(settings)}
    assert before["cursor"] and len(before["rows"]) == len(sandbox.emulator(STREAM[0]).dump(STREAM[1]))
    before["touched"] = sandbox.emulator(STREAM[0]).touch(STREAM[1], 25)
    sandbox.state.clear_requests()
    return before


def test_a_load_killed_mid_stream_commits_nothing_and_the_rerun_loads_every_record_once(
        settings, sandbox, spawn, touched_invoices):
    before = touched_invoices
    sandbox.set_faults(STREAM[0], latency_ms=250, methods=["GET"])
    run = run_asset(spawn, "extract", *STREAM, QUICKBOOKS_PAGE_SIZE="5", IP_BATCH_ROWS="5")
    # mid-stream: batches already spooled to Parquet, and the next page still on its way
    wait_for(lambda: len(spooled_parts(settings)) >= 2 and any(r["status"] == 0 for r in query_requests(sandbox)),
             "two spooled batches and a page in flight", watch=run)
    run.kill()
    sandbox.clear_faults()
    assert run.process.returncode == -signal.SIGKILL
    stale = spooled_parts(settings)
    assert stale, "the killed run's spool is the evidence that it died mid-stream"

    assert_warehouse_opens_for_writing(settings)
    assert raw_snapshots(settings) == before["rows"], "a killed read must not have written a single row"
    assert stream_state(settings) == before["cursor"], "a killed read must not move the cursor"
    assert extract_log_count(settings) == before["logged"]

    rerun = run_asset(spawn, "extract", *STREAM, QUICKBOOKS_PAGE_SIZE="5", IP_BATCH_ROWS="5")
    rerun.finish()
    assert_exactly_the_api_records_and_a_matching_cursor(settings, sandbox)
    changed = {k for k, raw in raw_snapshots(settings).items() if raw != before["rows"].get(k)}
    assert changed == set(before["touched"]), "the rerun re-reads from the old cursor: every edit arrives"
    assert extract_log_count(settings) == before["logged"] + 1
    # the dead run's spool was never loaded by anyone (the rows above prove it): the rerun removes it, saying so,
    # and cleans its own
    assert not spooled_parts(settings), "the rerun removes the dead run's spool and cleans its own"
    assert "Removed the stale spool" in rerun.output() and "never loaded" in rerun.output()
    assert not settings.spool_dir.exists() or not list(settings.spool_dir.iterdir()), "no empty run folders left"


def test_a_load_killed_inside_its_warehouse_transaction_is_all_or_nothing(settings, sandbox, spawn,
                                                                         touched_invoices):
    before = touched_invoices
    sandbox.set_faults(STREAM[0], latency_ms=100, methods=["GET"])
    run = run_asset(spawn, "extract", *STREAM, QUICKBOOKS_PAGE_SIZE="5", IP_BATCH_ROWS="1")
    # once the run is paging it has read its cursor and closed the file; hold the file until it has read every
    # page and waits to load, then let it in and kill it while it has the database open (inside `load_spool`)
    wait_for(lambda: query_requests(sandbox), "the first page request", watch=run)
    database = Path(settings.warehouse_database).resolve()
    with holding_the_warehouse(settings.warehouse_database):
        wait_for(lambda: WAITING_FOR_LOCK.search(run.output()), "the run to wait for the warehouse", watch=run)
        assert len(spooled_parts(settings)) >= 25, "the whole read is spooled before the load"
        sandbox.clear_faults()
        process = psutil.Process(run.process.pid)
    open_files = wait_for(lambda: _stopped_holding(process, database), "the run to open the warehouse", watch=run)
    run.kill()
    assert any(Path(f.path) == database for f in open_files)

    assert_warehouse_opens_for_writing(settings)
    rows, cursor = raw_snapshots(settings), stream_state(settings)
    if rows == before["rows"]:  # killed before COMMIT: nothing of the load, and the old cursor
        assert cursor == before["cursor"] and extract_log_count(settings) == before["logged"]
    else:  # killed after COMMIT: all of it, with its cursor and its log row
        assert_exactly_the_api_records_and_a_matching_cursor(settings, sandbox)
        assert extract_log_count(settings) == before["logged"] + 1

    run_asset(spawn, "extract", *STREAM).finish()
    assert_exactly_the_api_records_and_a_matching_cursor(settings, sandbox)


def _stopped_holding(process: psutil.Process, database: Path) -> list[Any] | None:
    """Freeze the process (SIGSTOP) the moment it has the database file open, so the kill lands inside."""
    try:
        files = process.open_files()
    except psutil.NoSuchProcess:
        return None
    if not any(Path(f.path) == database for f in files):
        return None
    process.suspend()
    return process.open_files()


# -- 2. a sync batch ----------------------------------------------------------------------------------------------
WRITE_PATHS = {"quickbooks": "/invoice", "xero": "/Invoices", "odoo": "/jsonrpc"}
TARGET_ENV = {f"{p}_REQUESTS_PER_SECOND": "100" for p in ("QUICKBOOKS", "XERO", "SALESFORCE")}


def target_writes(sandbox: Sandbox, system: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.state.request_log(system)
            if r["method"] in {"POST", "PUT"} and r["path"].endswith(WRITE_PATHS[system])]


def ledger(settings: Settings, sync_name: str) -> dict[str, tuple[str, str | None]]:
    return {k: (s, e) for k, s, e in warehouse_rows(
        settings, "SELECT record_key, status, external_id FROM sync.ledger WHERE sync_name = ?", [sync_name])}


def invoice_id(system: str, invoice: dict[str, Any]) -> str:
    return invoice["Id"] if system == "quickbooks" else invoice["InvoiceID"]


def kill_after_an_accepted_write(settings: Settings, sandbox: Sandbox, spawn: Callable[..., Child], system: str,
                                 sync_name: str, *, writes_before: int) -> None:
    """Run the invoice sync in its own process and SIGKILL it after the target accepted a write and before the
    ledger recorded it: the one crash an idempotent sync has to survive.

    The run sends write n+1 only after recording write n, so once write `writes_before + 1` is in flight (held by
    the sandbox's latency) the run has no transaction open; the test then takes the DuckDB file, and the run,
    answered, waits for it to record the outcome. It says so in its log, and that is when it dies."""
    sandbox.set_faults(system, latency_ms=500, methods=["POST", "PUT"])
    sandbox.state.clear_requests()
    run = run_asset(spawn, "sync", sync_name, **TARGET_ENV)
    wait_for(lambda: len(target_writes(sandbox, system)) > writes_before, "a write to be in flight", watch=run)
    with holding_the_warehouse(settings.warehouse_database):
        wait_for(lambda: WAITING_FOR_LOCK.search(run.output()), "the run to wait to record an outcome", watch=run)
        run.kill()
    sandbox.clear_faults()
    assert {r["status"] for r in target_writes(sandbox, system)} == {200}, "every write sent was accepted"


def assert_one_invoice_per_deal_and_a_ledger_that_names_it(settings: Settings, sandbox: Sandbox, system: str
                                                          ) -> None:
    invoice_sync = TARGETS[system][1]
    deals = won_deals(settings, system)
    recorded = ledger(settings, invoice_sync)
    for deal_id, _, _ in deals:
        invoices = _invoices_for(sandbox, system, deal_id)
        assert len(invoices) == 1, f"deal {deal_id}: {len(invoices)} invoices in {system}"
        assert recorded[f"salesforce:{deal_id}"] == ("synced", invoice_id(system, invoices[0]))
    assert len(recorded) == len(deals)
    assert journaled(settings, invoice_sync) == []


def journaled(settings: Settings, sync_name: str) -> list[tuple[str, str]]:
    """The write-ahead journal of a sync: (record key, idempotency key) of batches whose outcome is unknown."""
    return warehouse_rows(settings, "SELECT record_key, idempotency_key FROM sync.pending WHERE sync_name = ? "
                                    "ORDER BY position", [sync_name])


def sync_errors(settings: Settings, sync_name: str) -> int:
    return warehouse_rows(settings, "SELECT count(*) FROM sync.errors WHERE sync_name = ?", [sync_name])[0][0]


def in_doubt(settings: Settings, sandbox: Sandbox, system: str) -> list[str]:
    """Deals the target has an invoice for that the ledger does not know about."""
    recorded = ledger(settings, TARGETS[system][1])
    return [deal_id for deal_id, _, _ in won_deals(settings, system)
            if _invoices_for(sandbox, system, deal_id) and f"salesforce:{deal_id}" not in recorded]


def re_extract_the_crm(settings: Settings, changed: dict[str, Any]) -> None:
    """An opportunity changed in the CRM after the crash, and the nightly run re-reads the CRM and rebuilds the
    models before the rerun (its modstamp is after every other record's, so the incremental read sees it)."""
    moment = ANCHOR + timedelta(minutes=1)
    changed.update(LastModifiedDate=stamp(moment), SystemModstamp=stamp(moment))
    materialize_stream(settings, "salesforce", "opportunities")
    build(settings)


def test_a_sync_killed_between_an_accepted_write_and_its_ledger_row_never_invoices_twice(
        settings, sandbox, spawn, monkeypatch):
    """QuickBooks, one invoice per request with a `requestid`: killed after k of n writes were accepted, then the
    deal whose invoice was in doubt is renamed in the CRM before the rerun. The row's hash (and with it a key
    derived from it) changes; the invoice that already exists must still not be created a second time."""
    system = "quickbooks"
    for name, value in TARGET_ENV.items():
        monkeypatch.setenv(name, value)
    prepare(settings, sandbox, system)
    customers = sync(settings, TARGETS[system][0])
    assert customers.failed == 0 and customers.created > 0
    total = len(won_deals(settings, system))
    assert total >= 6

    kill_after_an_accepted_write(settings, sandbox, spawn, system, TARGETS[system][1], writes_before=2)
    assert_warehouse_opens_for_writing(settings)
    doubtful = in_doubt(settings, sandbox, system)
    assert len(doubtful) == 1, "exactly one write was accepted by the target and not recorded"
    synced = ledger(settings, TARGETS[system][1])
    assert len(synced) == len(target_writes(sandbox, system)) - 1 >= 2
    assert {s for s, _ in synced.values()} == {"synced"}  # whole ledger rows, each with its external id
    assert [k for k, _ in journaled(settings, TARGETS[system][1])] == [f"salesforce:{doubtful[0]}"]

    opportunity = sandbox.emulator("salesforce").records["Opportunity"][doubtful[0]]
    opportunity["Name"] += " (renamed after the crash)"
    re_extract_the_crm(settings, opportunity)

    run_asset(spawn, "sync", TARGETS[system][1], **TARGET_ENV).finish()
    assert_one_invoice_per_deal_and_a_ledger_that_names_it(settings, sandbox, system)
    assert len({invoice_id(system, i) for d, _, _ in won_deals(settings, system)
                for i in _invoices_for(sandbox, system, d)}) == total
    assert sync_errors(settings, TARGETS[system][1]) == 0


def test_a_batch_killed_before_its_ledger_rows_is_replayed_whole_when_the_model_has_grown(
        settings, sandbox, spawn, monkeypatch):
    """Xero, every invoice in one batch request with an `Idempotency-Key`: killed after Xero saved the batch and
    before the ledger recorded it; a deal is won meanwhile. The rerun's batch would hold one more record (a
    different key, so Xero would save every invoice again): the interrupted batch must be resent as it was."""
    system = "xero"
    for name, value in TARGET_ENV.items():
        monkeypatch.setenv(name, value)
    prepare(settings, sandbox, system)
    assert sync(settings, TARGETS[system][0]).failed == 0
    first = len(won_deals(settings, system))

    kill_after_an_accepted_write(settings, sandbox, spawn, system, TARGETS[system][1], writes_before=0)
    assert_warehouse_opens_for_writing(settings)
    assert len(target_writes(sandbox, system)) == 1
    assert len(in_doubt(settings, sandbox, system)) == first, "the whole batch was saved: no half-applied batch"
    assert ledger(settings, TARGETS[system][1]) == {}
    assert sorted(k for k, _ in journaled(settings, TARGETS[system][1])) == sorted(
        f"salesforce:{d}" for d in in_doubt(settings, sandbox, system))

    emails = {_email(system, c) for c in _customers(sandbox, system)}
    buyer = next(c for c in sandbox.emulator("salesforce").records["Contact"].values()
                 if c.get("Email") and c["Email"].lower() in emails)
    new_deal = _plant_won_deal(sandbox, 77, buyer, 4321.0)
    re_extract_the_crm(settings, sandbox.emulator("salesforce").records["Opportunity"][new_deal])
    assert len(won_deals(settings, system)) == first + 1

    run_asset(spawn, "sync", TARGETS[system][1], **TARGET_ENV).finish()
    assert_one_invoice_per_deal_and_a_ledger_that_names_it(settings, sandbox, system)
    assert sync_errors(settings, TARGETS[system][1]) == 0


def test_a_batch_whose_answer_was_lost_stays_journaled_and_goes_out_again_under_its_first_key(
        settings, sandbox, monkeypatch):
    """The same hazard without a crash: retries run out on a batch write, and a 5xx or a timeout says nothing
    about whether the target saved it. The records fail visibly, stay out of the next plan, and the next run
    re-sends the journaled batch with the key it first went out with, before anything newly planned."""
    system = "xero"
    customer_sync, invoice_sync = TARGETS[system]
    for name, value in TARGET_ENV.items():
        monkeypatch.setenv(name, value)
    prepare(settings, sandbox, system)
    assert sync(settings, customer_sync).failed == 0
    first = len(won_deals(settings, system))
    monkeypatch.setenv("XERO_MAX_RETRIES", "0")
    sandbox.set_faults(system, error_rate=1.0, methods=["PUT"])
    with pytest.raises(SyncFailedError, match=f"{first} of {first} records failed"):
        sync(settings, invoice_sync)
    sandbox.clear_faults()
    lost = journaled(settings, invoice_sync)
    assert len(lost) == first and len({key for _, key in lost}) == 1, "one batch, journaled under one key"
    assert sync_errors(settings, invoice_sync) == first

    emails = {_email(system, c) for c in _customers(sandbox, system)}
    buyer = next(c for c in sandbox.emulator("salesforce").records["Contact"].values()
                 if c.get("Email") and c["Email"].lower() in emails)
    new_deal = _plant_won_deal(sandbox, 78, buyer, 1234.0)
    re_extract_the_crm(settings, sandbox.emulator("salesforce").records["Opportunity"][new_deal])
    plan = sync(settings, invoice_sync, dry_run=True).plan.counts()
    assert plan == {"creates": 1, "updates": 0, "deletes": 0, "unchanged": 0, "waiting": 0, "pending": first}

    sandbox.state.clear_requests()
    again = sync(settings, invoice_sync)
    assert (again.resumed, again.created, again.failed) == (first, first + 1, 0)
    assert len(target_writes(sandbox, system)) == 2  # the journaled batch as it was, then the new deal alone
    assert (system, lost[0][1]) in sandbox.state.idempotency, "re-sent under the key it first went out with"
    assert_one_invoice_per_deal_and_a_ledger_that_names_it(settings, sandbox, system)


def test_an_order_accepted_before_the_crash_and_extracted_back_is_not_sent_again(settings, sandbox, spawn):
    """Odoo has no idempotency key: its orders are unique by `client_order_ref`, and the sync's source finds an
    order already in the extracted Odoo tables. Killed after Odoo accepted an order and before the ledger knew;
    the nightly Odoo extract then brings that order back. The rerun must not send the journaled create (Odoo would
    refuse it as a duplicate and the run would report a failure): the model no longer wants it, so it is dropped."""
    planted = odoo_scenario.prepare(settings, sandbox)
    kill_after_an_accepted_write(settings, sandbox, spawn, "odoo", odoo_scenario.NAME, writes_before=2)
    assert_warehouse_opens_for_writing(settings)
    recorded = ledger(settings, odoo_scenario.NAME)
    orders = odoo_scenario.orders_by_ref(sandbox)
    doubtful = [key for key in odoo_scenario.expected(settings) if key in orders and key not in recorded]
    assert len(doubtful) == 1 and len(recorded) == 1, "login, one recorded create, one create in doubt"
    assert [k for k, _ in journaled(settings, odoo_scenario.NAME)] == doubtful

    materialize_all_partitions(settings, "odoo", "sale_orders")
    build(settings)
    run_asset(spawn, "sync", odoo_scenario.NAME, **TARGET_ENV).finish()
    assert odoo_scenario.assert_one_order_per_payment(settings, sandbox) >= len(planted)
    assert journaled(settings, odoo_scenario.NAME) == [] and sync_errors(settings, odoo_scenario.NAME) == 0
    assert doubtful[0] not in ledger(settings, odoo_scenario.NAME)  # known through the extracted order instead


# -- 3. a webhook burst -------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_receiver(spawn: Callable[..., Child], data: Path, port: int) -> Child:
    code = "from integration_pipelines.webhooks.cli import webhooks_app; webhooks_app()"
    receiver = spawn("receiver", [sys.executable, "-c", code, "serve", "--port", str(port)],
                     IP_DATA_DIR=str(data), IP_WEBHOOK_PUBLIC_URL=f"http://127.0.0.1:{port}")

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, "the receiver to listen", timeout=30, watch=receiver)
    return receiver


def test_a_receiver_killed_mid_burst_lands_every_event_exactly_once_after_redelivery(
        tmp_path, monkeypatch, spawn):
    """400 signed events from 8 concurrent senders; the receiver process is SIGKILLed with requests in flight.
    Every acknowledged event is on disk, whole; the sensor's listing shows no partial or temp file. Restarted, the
    receiver gets every unacknowledged event again (as the provider retries) and some acknowledged ones: those it
    had landed before dying are acknowledged as duplicates, the rest land, and each event is one file and, after
    ingest, one row."""
    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    data, port = tmp_path / "data", _free_port()
    events = {f"evt_burst_{i:04d}": stripe_event(f"evt_burst_{i:04d}", f"ch_burst_{i:04d}", refunded=i % 3)
              for i in range(400)}
    receiver = start_receiver(spawn, data, port)

    acknowledged: set[str] = set()
    in_flight = Counter[str]()
    lock = threading.Lock()

    def send(item: tuple[str, Delivery]) -> None:
        event_id, delivery = item
        with lock:
            in_flight["now"] += 1
        try:
            status = httpx.post(f"http://127.0.0.1:{port}{delivery.path}", content=delivery.body,
                                headers=delivery.headers, timeout=10).status_code
        except httpx.HTTPError:
            status = 0
        with lock:
            in_flight["now"] -= 1
            if 200 <= status < 300:
                acknowledged.add(event_id)

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(send, item) for item in events.items()]

        def mid_burst() -> bool:
            with lock:
                return len(acknowledged) >= 100 and in_flight["now"] > 0

        wait_for(mid_burst, "100 acknowledged events and requests in flight", watch=receiver)
        receiver.kill()
        for future in futures:
            future.result(timeout=60)
    assert 100 <= len(acknowledged) < len(events)

    store = LocalLandingStore(data)
    visible = {ref.event_id for ref in store.list("landing")}
    assert acknowledged <= visible, "an acknowledged event was lost"
    for ref in store.list("landing"):  # the sensor sees only whole, parseable files
        assert json.loads(json.loads(store.read(ref))["body"])["id"] == ref.event_id

    # the restarted receiver, and the provider re-delivering everything it got no 2xx for, plus (delivery is at
    # least once) a few it did get one for
    marked = {p.name for p in (data / "seen" / "stripe").iterdir() if not p.name.startswith(".")}
    again = sorted(acknowledged)[:20]
    start_receiver(spawn, data, port)
    with httpx.Client(timeout=10) as client:
        statuses = {event_id: deliver(client, f"http://127.0.0.1:{port}", events[event_id], attempts=5,
                                      base_delay=0.05)
                    for event_id in [*sorted(set(events) - acknowledged), *again]}
        metrics = client.get(f"http://127.0.0.1:{port}/metrics").text
    assert set(statuses.values()) == {200}
    # what was landed before the kill (answer lost or not) is recognised across the restart, not landed again
    duplicates = len(again) + len(marked - acknowledged)
    assert f'webhook_events_duplicate_total{{provider="stripe"}} {duplicates}' in metrics, metrics

    on_disk = Counter(p.stem for p in (data / "landing").rglob("*.json") if not p.name.startswith("."))
    assert set(on_disk) == set(events) and set(on_disk.values()) == {1}, "every event landed exactly once"
    assert {ref.event_id for ref in store.list("landing")} == set(events)
    env = Env(data)
    env.drain()
    assert env.rows("SELECT count(*), count(DISTINCT event_id) FROM raw_webhooks.events") == [(400, 400)]
    assert env.rows("SELECT count(*), count(DISTINCT _pk) FROM raw_stripe.charges") == [(400, 400)]
    assert store.list("landing") == [] and len(store.list("processed")) == len(events)
    assert store.list("failed") == []
