"""Failed sync records an operator can handle, and sync start dates, as a user meets them.

The CLI runs in a subprocess (`integration-pipelines sync run|errors|skip|retry|history`) against the sandbox and
a real warehouse; the permanently refused record is a receipt to a recipient the mailer has marked inactive
(Postmark's 422 ErrorCode 406), which no retry can change. The Dagster side runs through `materialize`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import dagster as dg
import pytest

from integration_pipelines.assets.roi import build_roi_asset
from integration_pipelines.assets.syncs import build_sync_asset
from integration_pipelines.resources import WarehouseResource
from integration_pipelines.syncs.registry import get_sync

from .conftest import warehouse_rows
from .test_alerts import Capture
from .test_core_models import build, extract, stripe_core_warehouse
from .test_syncs import add_charge, open_invoices_of_stripe_customers, posts_to, sync

NAME = "payment_receipts_to_mailer"
CLI = [sys.executable, "-m", "integration_pipelines.cli"]


def cli(*args: str) -> subprocess.CompletedProcess:
    """As a user runs it: the test's environment (sandbox URL, data folder, IP_SYNC_*) and working folder."""
    return subprocess.run([*CLI, *args], env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=180)


def receipts(sandbox) -> dict[str, int]:
    sent: dict[str, int] = {}
    for message in sandbox.emulator("mailer").dump("outbound_messages"):
        key = message["Metadata"]["idempotency_key"]
        sent[key] = sent.get(key, 0) + 1
    return sent


@pytest.fixture
def prepared(settings, sandbox, tmp_path_factory, monkeypatch):
    """Stripe extracted and core built (once per session, copied); the world's syncs start with the world. Returns
    the receipts due (payment key → email) and the keys of one inactive recipient's payments."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")
    stripe_core_warehouse(settings, tmp_path_factory)
    due = dict(warehouse_rows(settings, """
        SELECT p.source_system || ':' || p.source_id, c.email FROM core.payments p
        JOIN core.customers c ON c.golden_id = p.golden_customer_id
        WHERE p.kind = 'processor' AND p.status = 'succeeded' AND c.email IS NOT NULL"""))
    _, bad_email = sorted(due.items())[0]
    refused = sorted(k for k, e in due.items() if e == bad_email)
    assert len(refused) >= 1 and len(refused) / len(due) <= 0.25  # a first run under the error threshold
    sandbox.emulator("mailer").inactive.add(bad_email)
    return due, refused


def test_a_refused_record_is_parked_after_n_attempts_alerted_twice_and_handled_from_the_cli(
        settings, sandbox, prepared, monkeypatch):
    due, refused = prepared
    k = len(refused)
    capture = Capture()
    monkeypatch.setenv("IP_ALERT_WEBHOOK_URL", f"{capture.url}/generic")
    monkeypatch.setenv("IP_SYNC_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("IP_SYNC_RETRY_BACKOFF_SECONDS", "0")  # every run may send again (backoff: test_syncs)
    try:
        first = cli("sync", "run", NAME)
        assert first.returncode == 0, first.stderr
        assert f"created {len(due) - k}, updated 0, deleted 0, failed {k}" in first.stdout
        assert [b["title"] for _, b in capture.posts] == [f"sync {NAME}: {k} record(s) refused by mailer"]
        assert refused[0] in capture.posts[0][1]["summary"] and "marked as inactive" in capture.posts[0][1]["summary"]

        for _ in range(2):  # attempts 2 and 3: known failures, so no failed run and no alert per run
            sandbox.state.clear_requests()
            again = cli("sync", "run", NAME)
            assert again.returncode == 0, again.stderr
            assert len(posts_to(sandbox, "mailer")) == k
        assert [b["title"] for _, b in capture.posts] == [
            f"sync {NAME}: {k} record(s) refused by mailer",
            f"sync {NAME}: {k} record(s) parked after repeated refusals by mailer"]

        sandbox.state.clear_requests()  # attempt 3 was the last: parked records are not sent
        parked = cli("sync", "run", NAME)
        assert parked.returncode == 0, parked.stderr
        assert f"parked: {k}" in parked.stdout and posts_to(sandbox, "mailer") == []
        errors = json.loads(cli("sync", "errors", NAME, "--json").stdout)
        assert [(e["key"], e["status"], e["attempts"], e["operation"], e["next_attempt_at"]) for e in errors] == [
            (key, "parked", 3, "create", None) for key in refused]
        assert "marked as inactive" in errors[0]["last_error"]
        table = cli("sync", "errors", NAME)
        assert refused[0] in table.stdout and "never (parked" in table.stdout

        # retry one: the next run sends it (and it is refused again, quietly: the operator knows)
        one = refused[0]
        assert cli("sync", "retry", NAME, one).returncode == 0
        sandbox.state.clear_requests()
        assert cli("sync", "run", NAME).returncode == 0
        assert len(posts_to(sandbox, "mailer")) == 1
        assert warehouse_rows(settings, "SELECT status, attempts FROM sync.ledger WHERE sync_name = ? AND "
                                        "record_key = ?", [NAME, one]) == [("failed", 1)]

        # skip it: never sent again, listed as skipped with the reason, not a failure
        skip = cli("sync", "skip", NAME, one, "--reason", "customer closed the account")
        assert skip.returncode == 0, skip.stderr
        sandbox.state.clear_requests()
        assert cli("sync", "run", NAME).returncode == 0
        assert posts_to(sandbox, "mailer") == []
        listed = {e["key"]: e for e in json.loads(cli("sync", "errors", NAME, "--json").stdout)}
        assert (listed[one]["status"], listed[one]["skip_reason"]) == ("skipped", "customer closed the account")
        assert len(capture.posts) == 2  # nothing of this alerted again

        # the address is reactivated in the mailer: retry them all, and every receipt went out exactly once
        sandbox.emulator("mailer").inactive.clear()
        assert cli("sync", "retry", NAME, "--all").returncode == 0
        last = cli("sync", "run", NAME)
        assert last.returncode == 0 and f"created {k}, updated 0, deleted 0, failed 0" in last.stdout
        assert receipts(sandbox) == dict.fromkeys(due, 1)
        assert json.loads(cli("sync", "errors", NAME, "--json").stdout) == []

        history = json.loads(cli("sync", "history", NAME, "--json").stdout)
        assert [(h["created"], h["failed"], h["parked"], h["skipped"]) for h in reversed(history)] == [
            (len(due) - k, k, 0, 0), (0, k, 0, 0), (0, k, k, 0), (0, 0, k, 0), (0, 1, k - 1, 0), (0, 0, k - 1, 1),
            (k, 0, 0, 0)]
        assert len(capture.posts) == 2
    finally:
        capture.server.shutdown()


def test_operator_mistakes_are_one_readable_paragraph_and_exit_2(settings, sandbox, prepared):
    assert cli("sync", "run", NAME).returncode == 0
    unknown = cli("sync", "skip", "payments_to_mailchimp", "stripe:ch_1")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "no sync named 'payments_to_mailchimp'" in unknown.stderr and "payment_receipts_to_mailer" in unknown.stderr
    missing = cli("sync", "skip", NAME, "stripe:ch_does_not_exist")
    assert missing.returncode == 2 and "neither in the sync's source nor in its ledger" in missing.stderr
    synced = sorted(set(prepared[0]) - set(prepared[1]))[0]
    done = cli("sync", "retry", NAME, synced)
    assert done.returncode == 2 and "is not failing, parked or skipped" in done.stderr
    both = cli("sync", "retry", NAME)
    assert both.returncode == 2 and "--all" in both.stderr


def test_roi_materializes_while_a_sync_has_a_failing_record(settings, sandbox, prepared, monkeypatch):
    """The second run meets a record already known to fail. Before, that failed the sync step (1 of 1 records
    failed) and Dagster skipped the ROI report downstream; now the step succeeds and the asset check reports it."""
    _, refused = prepared
    monkeypatch.setenv("IP_SYNC_RETRY_BACKOFF_SECONDS", "0")
    spec = get_sync(NAME)
    assets = [build_sync_asset(spec, settings), build_roi_asset([spec])]
    resources = {"warehouse": WarehouseResource(database=settings.warehouse_database)}
    for _ in range(2):
        result = dg.materialize(assets, resources=resources)
        assert result.success
        assert result.asset_materializations_for_node("roi__report")
        [check] = result.get_asset_check_evaluations()
        assert (check.check_name, check.passed, check.severity) == ("failing_records", False,
                                                                    dg.AssetCheckSeverity.ERROR)
        assert check.metadata["failed"].value == len(refused)
    metadata = result.asset_materializations_for_node("sync__payment_receipts_to_mailer")[0].metadata
    assert refused[0] in metadata["failing_records"].value and metadata["new_failures"].value == 0
    # acknowledged in the launchpad's run config: the check passes, ROI still runs
    config = {"ops": {"sync__payment_receipts_to_mailer": {"config": {"skip_keys": refused,
                                                                      "skip_reason": "bounced"}}}}
    result = dg.materialize(assets, resources=resources, run_config=config)
    [check] = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["skipped"].value == len(refused)


def test_a_payment_before_the_start_never_gets_a_receipt(settings, sandbox, monkeypatch):
    (old_invoice, old_customer), (new_invoice, new_customer) = open_invoices_of_stripe_customers(sandbox, 2)
    old = add_charge(sandbox, old_invoice, old_customer, 1200, "paid_before_start")
    new = add_charge(sandbox, new_invoice, new_customer, 1200, "paid_after_start")  # 2026-03-09 18:00 UTC
    sandbox.emulator("stripe").objects["charges"][old]["created"] = int(datetime(2026, 3, 8, 12, tzinfo=UTC)
                                                                        .timestamp())
    extract(settings, ("stripe",))
    build(settings)
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")  # the sync's own start wins over the default for all
    monkeypatch.setenv(f"IP_SYNC_{NAME.upper()}_START", "2026-03-09")

    plan = cli("sync", "plan", NAME)
    assert plan.returncode == 0, plan.stderr
    assert "before_start: " in plan.stdout and f"IP_SYNC_{NAME.upper()}_START" in plan.stdout
    for _ in range(2):
        assert cli("sync", "run", NAME).returncode == 0
        sent = receipts(sandbox)
        assert sent[f"stripe:{new}"] == 1 and f"stripe:{old}" not in sent
    assert all(paid >= datetime(2026, 3, 9, tzinfo=UTC) for (paid,) in warehouse_rows(
        settings, "SELECT p.paid_at FROM core.payments p WHERE list_contains(?, p.source_system || ':' || "
        "p.source_id)", [list(receipts(sandbox))]))
    history = json.loads(cli("sync", "history", NAME, "--json").stdout)
    assert history[0]["before_start"] == history[1]["before_start"] > 0


def test_without_a_configured_start_a_sync_starts_at_its_first_run(settings, sandbox, monkeypatch):
    """The sandbox world lies in the past: a sync switched on today sends none of it, and remembers when it
    started."""
    monkeypatch.delenv("IP_SYNC_START", raising=False)  # the settings fixture starts syncs at the world's history
    extract(settings, ("stripe",))
    build(settings)
    before = datetime.now(UTC)
    first = sync(settings, NAME)
    assert first.created == 0 and first.plan.counts()["creates"] == 0 and first.plan.before_start >= 8
    assert receipts(sandbox) == {}
    [(recorded,)] = warehouse_rows(settings, "SELECT first_run_at FROM sync.starts WHERE sync_name = ?", [NAME])
    assert recorded >= before and first.plan.start == recorded and first.start_source == "first run"
    assert sync(settings, NAME).plan.start == recorded  # recorded once


def test_every_sync_that_creates_from_history_has_a_start():
    """Switching a sync on must never act on last month's records: every insert-mode sync names the business time
    its start is compared with. Upsert and update syncs that carry current state (stock levels, a contact's
    status) have no history to hold back; an upsert sync that creates from events (form leads) has one too."""
    from integration_pipelines.syncs.registry import discover_syncs

    state_syncs = {"inventory_to_shopify", "inventory_to_square", "payment_status_to_hubspot",
                   "ticket_status_to_hubspot"}
    missing = [s.name for s in discover_syncs() if s.start_column is None and s.name not in state_syncs]
    assert missing == [], f"syncs without a start_column: {missing}"
    assert all(s.mode != "insert" for s in discover_syncs() if s.name in state_syncs)
