"""The operator commands (issue 19) as a user runs them: the CLI (a subprocess; its app in this process where a
test runs a command many times, `cli_in_process`) against the real sandbox and a real warehouse. `systems check`,
`extract`, `stream reset`, `systems status`, `webhooks trace`, and known errors as one paragraph with exit code 2."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx

from integration_pipelines.sandbox.xero import SANDBOX_CLIENT_ID as XERO_CLIENT_ID
from integration_pipelines.sandbox.xero import SANDBOX_CLIENT_SECRET as XERO_CLIENT_SECRET
from integration_pipelines.sandbox.xero import SANDBOX_READ_ONLY_REFRESH_TOKEN as XERO_READ_ONLY_TOKEN
from integration_pipelines.sandbox.xero import SANDBOX_TENANT_ID as XERO_TENANT_ID

from .cli_in_process import run_in_process
from .conftest import materialize_stream

CLI = [sys.executable, "-m", "integration_pipelines.cli"]


def run_cli(args: list[str], timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env={**os.environ, "COLUMNS": "200", **env}, capture_output=True,
                          text=True, timeout=timeout)


def test_systems_check_passes_against_the_sandbox_for_both_credential_sets(settings):
    listing = run_cli(["systems", "check", "stripe"])
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert "stripe" in listing.stdout and "sandbox" in listing.stdout and "1 of 1 check(s) passed" in listing.stdout
    result = run_cli(["systems", "check", "hubspot", "--json"])
    assert result.returncode == 0, result.stderr
    checks = json.loads(result.stdout)
    assert [(c["system"], c["purpose"], c["state"]) for c in checks] == [("hubspot", "read", "ok"),
                                                                        ("hubspot", "write", "ok")]
    assert all(c["reachable"] and c["auth_ok"] and c["mode"] == "sandbox" and c["status"] == 200 for c in checks)
    assert "per 10 s" in checks[0]["rate_limit"]  # HubSpot's X-HubSpot-RateLimit-* headers


def test_systems_check_with_a_wrong_base_url_names_the_variable_and_exits_2(settings):
    result = run_cli(["systems", "check", "stripe"], STRIPE_BASE_URL="http://127.0.0.1:1")
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "unreachable" in out and "STRIPE_BASE_URL" in out and "Traceback" not in out
    as_json = json.loads(run_cli(["systems", "check", "stripe", "--json"], STRIPE_BASE_URL="http://127.0.0.1:1").stdout)
    assert as_json[0]["reachable"] is False and as_json[0]["fix"] == ["STRIPE_BASE_URL"]


def test_systems_check_reports_the_granted_scopes_and_fails_a_write_connection_without_them(settings,
                                                                                            sandbox_server):
    """Xero's token endpoint says what a connection was granted; QuickBooks' does not. A business that pasted its
    read-only connection's refresh token as the write one passes every read and would fail every sync: the check
    says so before any sync runs, naming the scopes and the variable."""
    sandbox = json.loads(run_cli(["systems", "check", "xero", "--json"]).stdout)
    assert [(c["purpose"], c["state"]) for c in sandbox] == [("read", "ok"), ("write", "ok")]
    # what the sandbox's seeded connection consented to (the emulator's grant)
    assert sandbox[0]["scopes_granted"] == ["accounting.contacts", "accounting.settings", "accounting.transactions",
                                            "offline_access"]
    assert all(c["scopes_granted"] is None and c["state"] == "ok"
               for c in json.loads(run_cli(["systems", "check", "quickbooks", "--json"]).stdout))
    # Salesforce's connected app: its OAuth scopes are checked; the object permissions (with spaces) no token reports
    assert [(c["state"], c["scopes_granted"]) for c in json.loads(
        run_cli(["systems", "check", "salesforce", "--json"]).stdout)] == [("ok", ["api", "refresh_token"])] * 2

    url = sandbox_server.url  # live mode, the "real" Xero being the emulator with its own fake values
    live = {"XERO_BASE_URL": url, "XERO_TOKEN_URL": f"{url}/connect/token", "XERO_CLIENT_ID": XERO_CLIENT_ID,
            "XERO_CLIENT_SECRET": XERO_CLIENT_SECRET, "XERO_TENANT_ID": XERO_TENANT_ID,
            "XERO_READ_REFRESH_TOKEN": XERO_READ_ONLY_TOKEN, "XERO_WRITE_REFRESH_TOKEN": XERO_READ_ONLY_TOKEN}
    result = run_cli(["systems", "check", "xero"], **live)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "scopes missing" in result.stdout and "1 of 2 check(s) passed" in result.stdout
    assert ("xero (write): the write connection was granted accounting.contacts.read accounting.settings.read "
            "accounting.transactions.read offline_access, without accounting.contacts, accounting.transactions: "
            "connect the app again with those scopes and put the new refresh token in XERO_WRITE_REFRESH_TOKEN."
            ) in " ".join(result.stderr.split())
    checks = json.loads(run_cli(["systems", "check", "xero", "--json"], **live).stdout)
    assert [(c["purpose"], c["state"], c["scopes_missing"], c["fix"]) for c in checks] == [
        ("read", "ok", [], []),
        ("write", "scopes missing", ["accounting.contacts", "accounting.transactions"], ["XERO_WRITE_REFRESH_TOKEN"])]
    assert XERO_READ_ONLY_TOKEN not in result.stdout + result.stderr


def test_a_refused_credential_names_the_secret_variable(settings, sandbox_server):
    result = run_cli(["systems", "check", "hubspot", "--json"], HUBSPOT_TOKEN="pat-obviously-fake-not-real",
                     HUBSPOT_BASE_URL=sandbox_server.url)
    checks = json.loads(result.stdout)
    assert result.returncode == 2
    assert {c["state"] for c in checks} == {"auth failed"} and all(c["status"] == 401 for c in checks)
    assert all(c["fix"] == ["HUBSPOT_TOKEN"] and c["mode"] == "live" for c in checks)
    assert "pat-obviously-fake-not-real" not in result.stdout


def _state(settings, system: str, stream: str) -> list[tuple]:
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        return con.execute("SELECT state_key, cursor FROM ops.stream_state WHERE system = ? AND stream = ?",
                           [system, stream]).fetchall()


def _rows(settings, table: str) -> int:
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_extract_then_status_then_reset_dry_run_then_reset(settings, monkeypatch):
    """The first command through the real entry point, the others in this process (`cli_in_process`)."""
    first = run_cli(["extract", "hubspot/contacts"])

    def cli(args: list[str]) -> subprocess.CompletedProcess:
        return run_in_process(args, monkeypatch)

    assert first.returncode == 0, first.stderr
    loaded = _rows(settings, "raw_hubspot.contacts")
    assert loaded > 0 and f"{loaded} new, 0 changed" in first.stdout and "hubspot/contacts (sandbox" in first.stdout
    again = cli(["extract", "hubspot/contacts"])
    assert again.returncode == 0 and "changes since" in again.stdout and "0 new, 0 changed" in again.stdout
    daily = cli(["extract", "stripe/charges", "--partition", "2026-03-09", "--json"])
    assert daily.returncode == 0, daily.stderr
    charges = json.loads(daily.stdout)
    assert charges["partition"] == "2026-03-09" and charges["records"] == charges["new"] > 0

    status = cli(["systems", "status", "--json"])
    assert status.returncode == 0, status.stderr
    by_system = {s["system"]: s for s in json.loads(status.stdout)}
    hubspot = by_system["hubspot"]
    contacts = next(s for s in hubspot["streams"] if s["stream"] == "contacts")
    assert contacts["rows"] == loaded and contacts["last_success"] and contacts["loads"] == 2
    assert contacts["cursors"] == 1 and contacts["table"] == "raw_hubspot.contacts"
    assert "companies" in hubspot["never_extracted"] and "contacts" not in hubspot["never_extracted"]
    assert hubspot["mode"] == "sandbox" and hubspot["failing_streams"] is None and hubspot["failing_streams_note"]
    assert hubspot["new_columns"] == [] and contacts["schema_changes"] == []  # a first load changes no schema
    tables = json.loads(cli(["tables", "--json"]).stdout)
    assert {"schema": "raw_hubspot", "table": "contacts", "rows": loaded} in [
        {k: t[k] for k in ("schema", "table", "rows")} for t in tables]

    cursor = _state(settings, "hubspot", "contacts")
    dry = cli(["stream", "reset", "hubspot/contacts", "--dry-run", "--rows"])
    assert dry.returncode == 0, dry.stderr
    assert "Would delete 1 cursor(s) of hubspot/contacts" in dry.stdout and cursor[0][1] in dry.stdout
    assert f"Would delete {loaded} row(s) of raw_hubspot.contacts" in dry.stdout and "nothing was deleted" in dry.stdout
    assert _state(settings, "hubspot", "contacts") == cursor and _rows(settings, "raw_hubspot.contacts") == loaded

    done = cli(["stream", "reset", "hubspot/contacts", "--rows"])
    assert done.returncode == 0, done.stderr
    assert "Deleted 1 cursor(s)" in done.stdout and f"Deleted {loaded} row(s)" in done.stdout
    assert _state(settings, "hubspot", "contacts") == [] and _rows(settings, "raw_hubspot.contacts") == 0
    assert _state(settings, "stripe", "charges")  # other streams untouched
    reread = cli(["extract", "hubspot/contacts"])
    assert f"{loaded} new" in reread.stdout and "a full read" in reread.stdout


def test_known_errors_are_one_paragraph_without_a_traceback(settings):
    unreachable = run_cli(["extract", "stripe/customers", "--partition", "2026-03-09"],
                          STRIPE_BASE_URL="http://127.0.0.1:1", STRIPE_MAX_RETRIES="0")
    assert unreachable.returncode == 2
    assert "STRIPE_BASE_URL" in unreachable.stderr and "Traceback" not in unreachable.stderr
    paragraph = unreachable.stderr[unreachable.stderr.index("Error: "):]
    assert "STRIPE_BASE_URL" in paragraph and paragraph.count("\n") <= 2  # one paragraph, then the --debug hint
    no_warehouse = run_cli(["systems", "status"])
    assert no_warehouse.returncode == 2 and "There is no warehouse" in no_warehouse.stderr
    assert "Traceback" not in no_warehouse.stderr
    half_configured = run_cli(["extract", "quickbooks/customers"], QUICKBOOKS_CLIENT_ID="obviously-fake-id")
    assert half_configured.returncode == 2 and "QUICKBOOKS_CLIENT_SECRET" in half_configured.stderr
    assert "Traceback" not in half_configured.stderr
    unknown = run_cli(["extract", "stripe/nope"])
    assert unknown.returncode == 2 and "stripe/charges" in unknown.stderr
    debug = run_cli(["--debug", "extract", "stripe/customers", "--partition", "2026-03-09"],
                    STRIPE_BASE_URL="http://127.0.0.1:1", STRIPE_MAX_RETRIES="0")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serving_receiver() -> Iterator[int]:
    """`webhooks serve` as a user starts it, on a free loopback port, until it answers /healthz; stopped after."""
    port = _free_port()
    receiver = subprocess.Popen([*CLI, "webhooks", "serve", "--port", str(port)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env={**os.environ,
                                                               "IP_WEBHOOK_PUBLIC_URL": f"http://127.0.0.1:{port}"})
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield port
    finally:
        receiver.terminate()
        receiver.wait(timeout=20)


def _stripe_post(url: str, body: bytes) -> httpx.Response:
    from integration_pipelines.webhooks.config import WebhookSecrets

    secret = WebhookSecrets().primary("stripe_webhook_secret")
    stamp = str(int(time.time()))
    signature = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return httpx.post(url, content=body, headers={"Stripe-Signature": f"t={stamp},v1={signature}",
                                                  "Content-Type": "application/json"}, timeout=10)


def test_trace_follows_a_landed_and_applied_stripe_event_to_its_raw_row(settings, tmp_path: Path):
    from integration_pipelines.warehouse.duckdb import Warehouse
    from integration_pipelines.webhooks.ingest import ingest_batch
    from integration_pipelines.webhooks.landing import LocalLandingStore

    with _serving_receiver() as port:
        now = int(datetime.now(UTC).timestamp())
        event = {"id": "evt_trace_1", "object": "event", "type": "charge.succeeded", "created": now,
                 "data": {"object": {"id": "ch_trace_1", "object": "charge", "amount": 1250, "currency": "usd",
                                     "created": now, "status": "succeeded", "amount_refunded": 0,
                                     "customer": None}}}
        assert _stripe_post(f"http://127.0.0.1:{port}/webhooks/stripe", json.dumps(event).encode()).status_code == 200

    landed = run_cli(["webhooks", "trace", "evt_trace_1"])
    assert landed.returncode == 0, landed.stderr
    assert "landing: " in landed.stdout and "no row (not applied yet)" in landed.stdout

    # what the event lane does with a batch: claim it, apply it to the raw tables
    store = LocalLandingStore(settings.data_dir)
    assert len(store.claim("b1", 10)) == 1
    ingest_batch(store, Warehouse(settings.warehouse_database), settings.spool_dir, "b1", "lane-test")

    traced = run_cli(["webhooks", "trace", "evt_trace_1", "--provider", "stripe"])
    assert traced.returncode == 0, traced.stderr
    assert "processed: " in traced.stdout and "type charge.succeeded" in traced.stdout
    assert "raw_stripe.charges _pk=ch_trace_1: loaded by run lane-test" in traced.stdout
    as_json = json.loads(run_cli(["webhooks", "trace", "evt_trace_1", "--json"]).stdout)
    assert as_json["files"][0]["area"] == "processed" and as_json["event"]["type"] == "charge.succeeded"
    assert as_json["raw_rows"] == [{"table": "raw_stripe.charges", "_pk": "ch_trace_1", "found": True,
                                    "row": as_json["raw_rows"][0]["row"]}]
    assert as_json["raw_rows"][0]["row"]["amount"] == 1250

    missing = run_cli(["webhooks", "trace", "evt_nowhere"])
    assert missing.returncode == 2 and "No event 'evt_nowhere'" in missing.stderr


def test_webhooks_status_json_counts_each_area_by_provider_with_each_failure(settings, monkeypatch):
    """`webhooks status --json`: one record per area (as `sync list --json` has one per sync), the failures with
    their note's last line; the text shows the same counts. Real entry point once, then in this process."""
    from integration_pipelines.webhooks.landing import open_landing_store

    store = open_landing_store(settings)
    for provider, event_id in [("stripe", "evt_status_1"), ("stripe", "evt_status_2"), ("stripe", "evt_status_3"),
                               ("shopify", "sh_status_1")]:
        assert store.land(provider, "2026-03-09", event_id, b'{"id": "%s"}' % event_id.encode())
    failed = store.move(next(r for r in store.list("landing") if r.event_id == "evt_status_2"), "failed")
    store.write_note(failed, "Traceback (most recent call last):\n  ...\nValueError: amount is not a number\n")
    claimed = store.claim("b1", 1)
    assert [r.event_id for r in claimed] == ["sh_status_1"]  # providers in name order: shopify first
    (store.root / "landing" / "stripe" / "2026-03-09" / ".evt_status_9.json.0f1e.tmp").write_bytes(b"{")

    real = run_cli(["webhooks", "status", "--json"])
    assert real.returncode == 0, real.stderr
    expected = [
        {"area": "landing", "files": 2, "providers": {"stripe": 2}, "temp_files": 1},
        {"area": "claimed", "files": 1, "providers": {"shopify": 1}, "temp_files": 0},
        {"area": "processed", "files": 0, "providers": {}, "temp_files": 0},
        {"area": "failed", "files": 1, "providers": {"stripe": 1}, "temp_files": 0,
         "failures": [{"key": "stripe/2026-03-09/evt_status_2.json", "provider": "stripe",
                       "event_id": "evt_status_2", "error": "ValueError: amount is not a number"}]},
    ]
    assert json.loads(real.stdout) == expected
    in_process = run_in_process(["webhooks", "status", "--json"], monkeypatch)
    assert in_process.returncode == 0 and json.loads(in_process.stdout) == expected
    text = run_in_process(["webhooks", "status"], monkeypatch).stdout.splitlines()
    assert text == ["temp files (a writer died mid-write; `webhooks serve` removes those older than 10 min): 1",
                    "landing: 2", "claimed: 1", "processed: 0", "failed: 1",
                    "  stripe/2026-03-09/evt_status_2.json: ValueError: amount is not a number"]


def test_systems_check_job_reports_each_check_and_fails_the_run_on_a_refused_key(settings, sandbox_server,
                                                                                monkeypatch):
    """The `systems_check` job, as the UI launches it: its output metadata holds every check; a refused credential
    fails the run (assets/systems_check.py: a red run and the run-failure alert say a connection broke), with the
    checks and the variable to fix on the failure. HubSpot stays on the sandbox and passes (read and write)."""
    import dagster as dg

    from integration_pipelines.assets.systems_check import build_systems_check_job
    from integration_pipelines.connectors.registry import get_system

    passing = build_systems_check_job([get_system("hubspot")], settings).execute_in_process(
        instance=dg.DagsterInstance.ephemeral())
    assert passing.success
    done = next(e for e in passing.all_events if e.is_successful_output).step_output_data.metadata
    assert (done["ok"].value, done["failing"].value) == (2, 0)
    assert [(r["system"], r["purpose"], r["mode"], r["state"], r["status"], r["fix"])
            for r in done["results"].value] == [("hubspot", "read", "sandbox", "ok", 200, []),
                                                ("hubspot", "write", "sandbox", "ok", 200, [])]
    assert "| hubspot | read | sandbox | ok | 200 |" in done["checks"].value

    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_obviously_fake_not_a_real_key")
    monkeypatch.setenv("STRIPE_BASE_URL", sandbox_server.url)  # live mode, answered by the sandbox: refused
    mixed = build_systems_check_job([get_system("hubspot"), get_system("stripe")], settings).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    assert not mixed.success
    failure = next(e for e in mixed.all_events if e.is_step_failure).step_failure_data
    assert failure.user_failure_data is not None
    assert failure.user_failure_data.description == "1 of 3 system checks failed: stripe (read): auth failed, fix " \
                                                    "STRIPE_API_KEY"
    metadata = failure.user_failure_data.metadata
    assert (metadata["ok"].value, metadata["failing"].value) == (2, 1)
    results = {(r["system"], r["purpose"]): r for r in metadata["results"].value}
    assert list(results) == [("hubspot", "read"), ("hubspot", "write"), ("stripe", "read")]
    assert results[("hubspot", "read")]["state"] == results[("hubspot", "write")]["state"] == "ok"
    stripe = results[("stripe", "read")]
    assert (stripe["mode"], stripe["state"], stripe["status"], stripe["fix"], stripe["reachable"],
            stripe["auth_ok"]) == ("live", "auth failed", 401, ["STRIPE_API_KEY"], True, False)
    assert "sk_test_obviously_fake_not_a_real_key" not in json.dumps(metadata["results"].value)
    assert "sk_test_obviously_fake_not_a_real_key" not in metadata["checks"].value


def test_trace_follows_a_stripe_event_to_core_and_the_sync_ledger(settings, sandbox, tmp_path_factory, monkeypatch):
    """The rest of the trace: Stripe extracted, core built and `payment_receipts_to_mailer` run first, then the
    receiver lands a charge.succeeded for the world's charge ch_0MgNNeRLVHtKqz (Ken Dijkstra, USD 150.00, paying
    INV-1036; seed 7): the trace shows its raw row, its core.payments row and the receipt's ledger row."""
    from .test_core_models import stripe_core_warehouse
    from .test_syncs import sync

    stripe_core_warehouse(settings, tmp_path_factory)
    assert sync(settings, "payment_receipts_to_mailer").failed == 0
    with duckdb.connect(settings.warehouse_database, read_only=True) as con:
        charge = json.loads(con.execute("SELECT _raw FROM raw_stripe.charges WHERE _pk = 'ch_0MgNNeRLVHtKqz'")
                            .fetchone()[0])
    with _serving_receiver() as port:
        event = {"id": "evt_trace_core_1", "object": "event", "type": "charge.succeeded",
                 "created": charge["created"], "data": {"object": charge}}
        assert _stripe_post(f"http://127.0.0.1:{port}/webhooks/stripe", json.dumps(event).encode()).status_code == 200

    traced = run_in_process(["webhooks", "trace", "evt_trace_core_1", "--json"], monkeypatch)
    assert traced.returncode == 0, traced.stderr
    found = json.loads(traced.stdout)
    assert [(r["table"], r["_pk"], r["found"]) for r in found["raw_rows"]] == [
        ("raw_stripe.charges", "ch_0MgNNeRLVHtKqz", True)]
    payments = [c["row"] for c in found["core_rows"] if c["table"] == "core.payments"]
    assert [(p["source_system"], p["source_id"], p["golden_customer_id"], p["status"], p["amount_minor"],
             p["currency"]) for p in payments] == [("stripe", "ch_0MgNNeRLVHtKqz", "cust_f1248703f5d4bb58",
                                                     "succeeded", 15000, "USD")]
    receipts = [r for r in found["ledger"] if r["sync_name"] == "payment_receipts_to_mailer"]
    assert [(r["record_key"], r["status"], r["attempts"], r["last_error"], r["last_run_id"]) for r in receipts] == [
        ("stripe:ch_0MgNNeRLVHtKqz", "synced", 0, None, "test-run")]
    sent = {m["MessageID"]: m for m in sandbox.emulator("mailer").dump("outbound_messages")}
    message = sent[receipts[0]["target_id"]]  # the ledger's target id is the mailer's MessageID of this receipt
    assert message["To"] == "ken.dijkstra20@tyrell8.example.com"
    assert message["Metadata"]["idempotency_key"] == "stripe:ch_0MgNNeRLVHtKqz"
    text = run_in_process(["webhooks", "trace", "evt_trace_core_1"], monkeypatch).stdout
    assert "core.payments stripe:ch_0MgNNeRLVHtKqz" in text and "stripe:ch_0MgNNeRLVHtKqz" in text


def test_a_field_the_vendor_adds_is_recorded_listed_and_alerted_once(settings, sandbox, monkeypatch):
    """Stripe ships a new top-level field on customers (`loyalty_tier`) between two nightly reads (the first fields of
    a table an empty day made are not a change): the read after it gives it a column, `ops.schema_changes` records
    it, `systems status` lists it as added by the latest load, and one alert says so; a third read adds nothing and
    alerts nothing."""
    day = "2026-03-09"
    materialize_stream(settings, "stripe", "customers", "2026-03-06")  # no customer that day: an empty table
    materialize_stream(settings, "stripe", "customers", day)  # the API's fields arrive: not a change of schema
    assert json.loads(run_in_process(["systems", "status", "stripe", "--json"], monkeypatch).stdout)[0][
        "new_columns"] == []
    for customer in sandbox.emulator("stripe").objects["customers"].values():
        customer["loyalty_tier"] = "gold"
    materialize_stream(settings, "stripe", "customers", day)

    status = json.loads(run_in_process(["systems", "status", "stripe", "--json"], monkeypatch).stdout)[0]
    assert status["new_columns"] == ["customers.loyalty_tier"]
    [change] = next(s for s in status["streams"] if s["stream"] == "customers")["schema_changes"]
    assert (change["column"], change["type"]) == ("loyalty_tier", "VARCHAR")
    text = run_in_process(["systems", "status", "stripe"], monkeypatch).stdout
    assert "columns added by the latest loads: stripe/customers.loyalty_tier" in " ".join(text.split())
    incidents = json.loads((settings.data_dir / "alerts" / "incidents.json").read_text())
    assert [i for i in incidents if i.startswith("schema:")] == ["schema:raw_stripe.customers:loyalty_tier"]

    materialize_stream(settings, "stripe", "customers", day)
    status = json.loads(run_in_process(["systems", "status", "stripe", "--json"], monkeypatch).stdout)[0]
    assert status["new_columns"] == []
    assert len(next(s for s in status["streams"] if s["stream"] == "customers")["schema_changes"]) == 1
