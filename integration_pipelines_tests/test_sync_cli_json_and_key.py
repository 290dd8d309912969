"""`sync list --json`, `sync plan NAME --json` with each update's fields, and `sync run NAME --key K` (issue 19), as a
user runs them: the CLI in a subprocess against the sandbox and a real warehouse.

The facts are planted by hand: Dana, a customer of our own in Stripe (customer `cus_cli_key`) and HubSpot (a
contact created through HubSpot's API), paid charge `ch_cli_key` of USD 42.00 on 2026-03-09 and is later refunded
in full. `payment_status_to_hubspot` should set `last_payment_date` 2026-03-09 on her contact, then
`payment_status` `refunded`, and leave every other payer's contact alone when run with `--key`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import duckdb
import httpx

from integration_pipelines.connectors.registry import discover_systems, get_system
from integration_pipelines.syncs.engine import run_sync
from integration_pipelines.syncs.registry import discover_syncs
from integration_pipelines.syncs.spec import SyncSpec
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.warehouse.models import build_all

from .conftest import materialize_all_partitions, warehouse_rows

CLI = [sys.executable, "-m", "integration_pipelines.cli"]
NAME = "payment_status_to_hubspot"
EMAIL = "dana.keytest@example.test"
PAID = datetime(2026, 3, 9, 18, 0, tzinfo=UTC)


def cli(*args: str) -> subprocess.CompletedProcess:
    """As a user runs it: the test's environment (sandbox URL, data folder, IP_SYNC_START) and working folder."""
    return subprocess.run([*CLI, *args], env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=180)


def plant_dana(sandbox, sandbox_url: str) -> None:
    """Dana's HubSpot contact through HubSpot's API; her Stripe customer and charge in the emulator's store (the
    API would date them today, outside the world's daily partitions)."""
    created = httpx.post(f"{sandbox_url}/crm/v3/objects/contacts", timeout=10,
                         headers={"Authorization": "Bearer pat-FAKE-sandbox-read-write-0000"},
                         json={"properties": {"email": EMAIL, "firstname": "Dana", "lastname": "Keytest"}})
    assert created.status_code == 201, created.text
    stripe = sandbox.emulator("stripe")
    with stripe.sandbox.lock:
        template = next(iter(stripe.objects["customers"].values()))
        stripe.objects["customers"]["cus_cli_key"] = {**template, "id": "cus_cli_key", "email": EMAIL,
                                                      "name": "Dana Keytest", "phone": "+15550109999"}
        stripe.objects["charges"]["ch_cli_key"] = {
            "id": "ch_cli_key", "object": "charge", "amount": 4200, "amount_captured": 4200, "amount_refunded": 0,
            "created": int(PAID.timestamp()), "currency": "usd", "customer": "cus_cli_key", "invoice": None,
            "metadata": {}, "paid": True, "refunded": False, "status": "succeeded", "livemode": False}


def extract(settings) -> None:
    for system in ("stripe", "hubspot"):
        for stream in get_system(system).streams:
            materialize_all_partitions(settings, system, stream.name)


def build(settings) -> None:
    """The core models, as the `core` group's run builds them."""
    with Warehouse(settings.warehouse_database).connect() as con:
        con.execute("BEGIN")
        build_all(con, [(s.name, s.category) for s in discover_systems()])
        con.execute("COMMIT")


def contacts_with_payment_status(sandbox) -> dict[str, dict]:
    return {c["properties"]["email"]: c["properties"] for c in sandbox.emulator("hubspot").dump("contacts")
            if c["properties"].get("payment_status")}


def hubspot_writes(sandbox) -> list[dict]:
    return [r for r in sandbox.state.request_log("hubspot") if r["method"] in {"POST", "PUT", "PATCH", "DELETE"}]


def ledger(settings) -> list[tuple]:
    return warehouse_rows(settings, "SELECT record_key, status FROM sync.ledger WHERE sync_name = ? ORDER BY 1",
                          [NAME])


def test_sync_list_json_gives_every_sync_whole(settings):
    listed = cli("sync", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    syncs = json.loads(listed.stdout)
    by_name = {s["name"]: s for s in syncs}
    assert sorted(by_name) == sorted(s.name for s in discover_syncs()) and len(syncs) == len(by_name)
    assert by_name["ticket_status_to_hubspot"] == {
        "name": "ticket_status_to_hubspot", "title": "Support tickets → HubSpot contact support status",
        "target": "hubspot", "mode": "update", "key": "hubspot_contact_id",
        "sources": ["core/tickets", "core/customer_xref"], "depends_on": []}
    # the longest name, whole (the table may wrap a title; names are never cut)
    assert by_name["won_deal_customers_to_quickbooks"]["target"] == "quickbooks"
    assert by_name["payment_receipts_to_mailer"]["sources"] == ["core/payments", "core/customers"]


def test_plan_json_then_one_key_then_its_update_field_by_field(settings, sandbox, sandbox_server):
    plant_dana(sandbox, sandbox_server.url)
    extract(settings)
    build(settings)
    found = cli("query", f"SELECT golden_id FROM core.customers WHERE email = '{EMAIL}'", "--format", "csv")
    assert found.returncode == 0, found.stderr
    dana = found.stdout.splitlines()[1]
    sandbox.state.clear_requests()

    plan = cli("sync", "plan", NAME, "--json")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert (planned["sync"], planned["target"], planned["mode"], planned["dry_run"]) == (NAME, "hubspot", "upsert",
                                                                                         True)
    assert planned["counts"]["creates"] == len(planned["creates"]) > 1 and planned["updates"] == []
    mine = next(c for c in planned["creates"] if c["key"] == dana)
    assert mine["external_id"] is None
    assert mine["payload"]["idProperty"] == "email" and mine["payload"]["id"] == EMAIL
    assert mine["payload"]["properties"]["last_payment_date"] == "2026-03-09"
    assert hubspot_writes(sandbox) == [], "a plan sends nothing"

    one = cli("sync", "run", NAME, "--key", dana)
    assert one.returncode == 0, one.stderr
    assert f"only {dana}" in one.stdout and "created 1, updated 0, deleted 0, failed 0" in one.stdout
    assert list(contacts_with_payment_status(sandbox)) == [EMAIL]
    assert contacts_with_payment_status(sandbox)[EMAIL]["last_payment_date"] == "2026-03-09"
    assert len(hubspot_writes(sandbox)) == 1
    assert ledger(settings) == [(dana, "synced")], "records not selected are not marked"
    assert warehouse_rows(settings, "SELECT count(*) FROM sync.pending") == [(0,)]

    unknown = cli("sync", "run", NAME, "--key", "cust_no_such_customer")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "'cust_no_such_customer'" in unknown.stderr and f"sync {NAME}" in unknown.stderr
    assert ledger(settings) == [(dana, "synced")] and len(hubspot_writes(sandbox)) == 1

    # Dana's charge is refunded in full; the operator re-reads the day and core is rebuilt
    stripe = sandbox.emulator("stripe")
    with stripe.sandbox.lock:
        stripe.objects["charges"]["ch_cli_key"].update({"refunded": True, "amount_refunded": 4200})
    reread = cli("extract", "stripe/charges", "--partition", "2026-03-09", "--full-refresh")
    assert reread.returncode == 0, reread.stderr
    build(settings)

    again = json.loads(cli("sync", "plan", NAME, "--json").stdout)
    assert dana not in {c["key"] for c in again["creates"]}
    [update] = again["updates"]
    assert update["key"] == dana and update["external_id"]
    assert update["why"] == "the model row changed since it was last pushed"
    assert update["ledger_status"] == "synced" and update["last_run_id"].startswith("cli-key-")
    changes = {c["field"]: c for c in update["changes"]}
    assert changes["properties.payment_status"] == {"field": "properties.payment_status", "old": None,
                                                    "old_known": False, "new": "refunded"}
    assert changes["properties.last_payment_date"]["new"] == "2026-03-09"
    assert "idProperty" not in changes, "a constant of the template never changes"
    assert again["old_values"].startswith("unknown")

    text = cli("sync", "plan", NAME, "--key", dana)
    assert text.returncode == 0, text.stderr
    assert "updates: 1" in text.stdout and "creates: 0" in text.stdout
    assert 'properties.payment_status: ? → "refunded"' in text.stdout
    assert "why: the model row changed since it was last pushed (last pushed " in text.stdout
    assert "Old values (?) are not known" in text.stdout
    assert len(hubspot_writes(sandbox)) == 1

    updated = cli("sync", "run", NAME, "--key", dana)
    assert updated.returncode == 0, updated.stderr
    assert "created 0, updated 1, deleted 0, failed 0" in updated.stdout
    assert contacts_with_payment_status(sandbox) == {EMAIL: contacts_with_payment_status(sandbox)[EMAIL]}
    assert contacts_with_payment_status(sandbox)[EMAIL]["payment_status"] == "refunded"
    assert ledger(settings) == [(dana, "synced")]
    history = json.loads(cli("sync", "history", NAME, "--json").stdout)
    assert [(r["dry_run"], r["created"], r["updated"]) for r in history if not r["dry_run"]] == [(False, 0, 1),
                                                                                               (False, 1, 0)]


def test_a_selected_mirror_run_archives_only_the_selected_record(settings, sandbox):
    """Engine level (no catalog sync is a mirror): a selected run must not take the unselected records that left
    the model for deletes, nor those still in it for anything."""
    spec = SyncSpec(
        name="vip_list_to_hubspot", title="VIP list → HubSpot", description="A mirror of a curated list.",
        source_sql="SELECT lower(email) AS email, name FROM main.vip_list", key="email", target="hubspot",
        mode="mirror", create_writer="upsert_contacts", update_writer="upsert_contacts",
        delete_writer="archive_contact",
        payload={"idProperty": "email", "id": "{email}", "properties": {"email": "{email}", "firstname": "{name}"}})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(settings.warehouse_database) as con:
        con.execute("CREATE TABLE main.vip_list AS SELECT * FROM (VALUES ('vip1@example.test', 'Ann'), "
                    "('vip2@example.test', 'Bo'), ('vip3@example.test', 'Cy')) t(email, name)")
    warehouse = Warehouse(settings.warehouse_database)
    assert run_sync(spec, warehouse, settings, run_id="all").created == 3
    with duckdb.connect(settings.warehouse_database) as con:
        con.execute("DELETE FROM main.vip_list WHERE email <> 'vip1@example.test'")
        con.execute("UPDATE main.vip_list SET name = 'Anna'")
    selected = run_sync(spec, warehouse, settings, run_id="one", keys=["vip2@example.test"])
    assert (selected.deleted, selected.updated, selected.created) == (1, 0, 0)
    assert warehouse_rows(settings, "SELECT record_key, status FROM sync.ledger ORDER BY 1") == [
        ("vip1@example.test", "synced"), ("vip2@example.test", "deleted"), ("vip3@example.test", "synced")]
    live = {c["properties"]["email"]: c["properties"]["firstname"] for c in sandbox.emulator("hubspot").dump("contacts")
            if (c["properties"].get("email") or "").startswith("vip") and not c["archived"]}
    assert live == {"vip1@example.test": "Ann", "vip3@example.test": "Cy"}
