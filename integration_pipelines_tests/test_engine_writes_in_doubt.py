"""Writes that succeed and then fail: exactly one record in the target per source row, read back from the emulator.

The sandbox's `apply_then_fail` fault stores the write and then answers 5xx or cuts the connection, so the client
cannot tell an applied write from one that never arrived.
- Keyed targets (QuickBooks `requestid`, Xero `Idempotency-Key`, Square `idempotency_key`): the retry, or the next
  run's re-send from the journal, carries the same key, and the emulator replays its first answer.
- Unkeyed creates (Odoo JSON-RPC `create`, the mailer): never repeated once they may have reached the target. Odoo's
  writer looks the order up by its unique `client_order_ref` and links it; the mailer cannot be searched, so the
  receipt is held in doubt for an operator and never sent again.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from integration_pipelines.connectors.http import HttpClient, OutcomeUnknownError, RetryPolicy
from integration_pipelines.syncs.engine import (
    SyncFailedError,
    SyncPlan,
    SyncResult,
    _Batch,
    _record,
    idempotency_key,
    plan_sync,
    run_sync,
)
from integration_pipelines.syncs.spec import SyncSpec
from integration_pipelines.warehouse.duckdb import Warehouse

from .conftest import warehouse_rows

PEOPLE = [("p-1", "Ivy Inkwell Ltd", "ivy@inkwell.example.com"),
          ("p-2", "Juniper Joinery", "hello@juniper.example.com"),
          ("p-3", "Kestrel Kitchens", "orders@kestrel.example.com")]
KINDS = ["5xx", "drop"]

# keyed targets: the writer, its payload, and how to read the created records' names back from the emulator
KEYED: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "quickbooks": ("save_customer", {"DisplayName": "{name}", "PrimaryEmailAddr": {"Address": "{email}"}},
                   "customers", "DisplayName"),
    "xero": ("save_contacts", {"Name": "{name}", "EmailAddress": "{email}"}, "contacts", "Name"),
    "square": ("create_customer", {"given_name": "{name}", "email_address": "{email}",
                                   "reference_id": "{record_key}"}, "customers", "given_name"),
}


def _load(settings, rows: list[tuple[Any, ...]], columns: str) -> Warehouse:
    warehouse = Warehouse(settings.warehouse_database)
    with warehouse.connect() as con:
        con.execute(f"CREATE OR REPLACE TABLE doubt_model ({columns})")
        con.executemany(f"INSERT INTO doubt_model VALUES ({', '.join('?' * len(rows[0]))})", rows)
    return warehouse


def _run_until_settled(spec: SyncSpec, warehouse: Warehouse, settings, runs: int = 5) -> list[SyncResult]:
    """Nightly runs under the fault (a run may fail on its error threshold; the next one carries on)."""
    results = []
    for n in range(runs):
        try:
            results.append(run_sync(spec, warehouse, settings, run_id=f"run-{n}"))
        except SyncFailedError:
            continue
    return results


def _faults_fired(sandbox, system: str) -> int:
    return sum(1 for r in sandbox.state.request_log(system) if r["fault"] == "apply_then_fail")


def _ledger(settings, name: str) -> dict[str, tuple[str | None, str]]:
    return {k: (e, s) for k, e, s in warehouse_rows(
        settings, "SELECT record_key, external_id, status FROM sync.ledger WHERE sync_name = ?", [name])}


# == keyed targets ==================================================================================================
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("system", sorted(KEYED))
def test_a_keyed_write_applied_then_failed_leaves_one_record(settings, sandbox, system: str, kind: str):
    writer, payload, stream, name_field = KEYED[system]
    spec = SyncSpec(name=f"doubt_{system}", title="People → target", description="applied-then-failed writes",
                    source_sql="SELECT * FROM doubt_model", key="person_key", target=system, mode="insert",
                    create_writer=writer, payload=payload)
    warehouse = _load(settings, PEOPLE, "person_key VARCHAR, name VARCHAR, email VARCHAR")
    before = {r[name_field] for r in sandbox.emulator(system).dump(stream)}
    sandbox.set_faults(system, apply_then_fail_rate=0.5, apply_then_fail_kind=kind, methods=["POST", "PUT"], seed=1)

    _run_until_settled(spec, warehouse, settings)
    sandbox.clear_faults()
    run_sync(spec, warehouse, settings, run_id="calm")  # whatever is still journaled is replayed, then settled

    assert _faults_fired(sandbox, system) >= 1
    created = [r[name_field] for r in sandbox.emulator(system).dump(stream) if r[name_field] not in before]
    assert sorted(created) == ["Ivy Inkwell Ltd", "Juniper Joinery", "Kestrel Kitchens"]
    assert {k: s for k, (_, s) in _ledger(settings, spec.name).items()} == {
        "p-1": "synced", "p-2": "synced", "p-3": "synced"}
    assert warehouse_rows(settings, "SELECT count(*) FROM sync.pending") == [(0,)]


# == unkeyed creates: Odoo, looked up by client_order_ref ===========================================================
def _odoo_spec() -> SyncSpec:
    return SyncSpec(
        name="doubt_odoo_orders", title="Paid orders → Odoo", description="applied-then-failed JSON-RPC creates",
        source_sql="SELECT * FROM doubt_model", key="order_key", target="odoo", mode="insert",
        create_writer="create_sale_order",
        payload={"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
            "service": "object", "method": "execute_kw",
            "args": ["{db}", "{uid}", "{api_key}", "sale.order", "create",
                     [{"partner_id": "{partner_id}", "client_order_ref": "{order_key}", "note": "{note}"}], {}]}})


def _odoo_orders(sandbox) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for order in sandbox.emulator("odoo").dump("sale_orders"):
        found.setdefault(order["client_order_ref"], []).append(order["id"])
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_an_odoo_create_applied_then_failed_is_found_and_linked_not_sent_again(settings, sandbox, kind: str):
    partner = next(p["id"] for p in sandbox.emulator("odoo").dump("partners") if p.get("active", True))
    keys = ["pay:doubt-1", "pay:doubt-2", "pay:doubt-3"]
    warehouse = _load(settings, [(k, partner, f"Fulfil {k}") for k in keys],
                      "order_key VARCHAR, partner_id BIGINT, note VARCHAR")
    sandbox.set_faults("odoo", apply_then_fail_rate=0.5, apply_then_fail_kind=kind, methods=["POST"], seed=1)

    results = _run_until_settled(_odoo_spec(), warehouse, settings)
    sandbox.clear_faults()
    results.append(run_sync(_odoo_spec(), warehouse, settings, run_id="calm"))

    assert _faults_fired(sandbox, "odoo") >= 1
    assert sum(r.linked for r in results) >= 1, "an applied-then-failed create was looked up and linked"
    orders = _odoo_orders(sandbox)
    assert {k: len(orders.get(k, [])) for k in keys} == {"pay:doubt-1": 1, "pay:doubt-2": 1, "pay:doubt-3": 1}
    ledger = _ledger(settings, "doubt_odoo_orders")
    assert {k: e for k, (e, _) in ledger.items()} == {k: str(orders[k][0]) for k in keys}
    assert {s for _, s in ledger.values()} <= {"synced", "linked"}
    # nothing was sent twice: Odoo's own uniqueness check never had to refuse a second create
    assert warehouse_rows(settings, "SELECT count(*) FROM sync.errors WHERE message LIKE '%already exists%'") == [(0,)]


def test_an_odoo_create_that_failed_before_applying_is_found_absent_and_sent_again(settings, sandbox, monkeypatch):
    """A 5xx or a cut connection before Odoo stored anything looks the same to the client: the lookup finds no
    order, which proves the create safe to send again, so the run still ends with one order per payment."""
    partner = next(p["id"] for p in sandbox.emulator("odoo").dump("partners") if p.get("active", True))
    keys = ["pay:lost-1", "pay:lost-2", "pay:lost-3"]
    warehouse = _load(settings, [(k, partner, f"Fulfil {k}") for k in keys],
                      "order_key VARCHAR, partner_id BIGINT, note VARCHAR")
    monkeypatch.setenv("ODOO_MAX_RETRIES", "12")
    sandbox.set_faults("odoo", error_rate=0.2, drop_rate=0.1, methods=["POST"], seed=1)
    result = run_sync(_odoo_spec(), warehouse, settings, run_id="run-1")
    sandbox.clear_faults()

    assert {r["fault"] for r in sandbox.state.request_log("odoo")} >= {"error", "drop"}
    assert (result.created, result.linked, result.failed, result.in_doubt) == (3, 0, 0, 0)
    orders = _odoo_orders(sandbox)
    assert {k: len(orders.get(k, [])) for k in keys} == {"pay:lost-1": 1, "pay:lost-2": 1, "pay:lost-3": 1}


# == unkeyed creates without a lookup: the mailer ===================================================================
MAILER_PAYLOAD = {"From": "receipts@example.com", "To": "{email}", "Subject": "Your receipt",
                  "TextBody": "Thank you, {name}.", "MessageStream": "outbound",
                  "Metadata": {"idempotency_key": "{record_key}"}}


def _mailer_spec() -> SyncSpec:
    return SyncSpec(name="doubt_receipts", title="Receipts", description="applied-then-failed emails",
                    source_sql="SELECT * FROM doubt_model", key="person_key", target="mailer", mode="insert",
                    create_writer="send_email", payload=MAILER_PAYLOAD)


def _receipts(sandbox) -> dict[str, int]:
    counts: dict[str, int] = {}
    for message in sandbox.emulator("mailer").dump("outbound_messages"):
        key = message["Metadata"]["idempotency_key"]
        counts[key] = counts.get(key, 0) + 1
    return counts


def _sends(sandbox) -> int:
    return sum(1 for r in sandbox.state.request_log("mailer") if r["method"] == "POST")


@pytest.mark.parametrize("kind", KINDS)
def test_an_email_applied_then_failed_is_held_in_doubt_and_never_sent_again(settings, sandbox, kind: str):
    warehouse = _load(settings, PEOPLE, "person_key VARCHAR, name VARCHAR, email VARCHAR")
    sandbox.set_faults("mailer", apply_then_fail_rate=1.0, apply_then_fail_kind=kind, methods=["POST"], seed=1)

    first = run_sync(_mailer_spec(), warehouse, settings, run_id="run-1")
    assert (first.created, first.failed, first.in_doubt) == (0, 0, 3)
    assert _sends(sandbox) == 3, "each email went out once: no automatic retry once it may have been sent"
    assert _receipts(sandbox) == {"p-1": 1, "p-2": 1, "p-3": 1}
    key, operation, message = first.errors[0]
    assert (key, operation) == ("p-1", "create")
    assert "sync doubt_receipts: record 'p-1' is in doubt" in message and "Check in Mailer" in message

    sandbox.clear_faults()
    sandbox.state.clear_requests()
    second = run_sync(_mailer_spec(), warehouse, settings, run_id="run-2")
    assert second.plan.counts() == {"creates": 0, "updates": 0, "deletes": 0, "unchanged": 0, "waiting": 0,
                                    "in_doubt": 3}
    assert _sends(sandbox) == 0 and _receipts(sandbox) == {"p-1": 1, "p-2": 1, "p-3": 1}
    assert warehouse_rows(settings, "SELECT run_id, in_doubt FROM sync.runs ORDER BY run_id") == [
        ("run-1", 3), ("run-2", 3)]
    assert {k: s for k, (_, s) in _ledger(settings, "doubt_receipts").items()} == {
        "p-1": "in_doubt", "p-2": "in_doubt", "p-3": "in_doubt"}

    # the operator checked the mailer: p-1's receipt is there (linked by hand), p-2's ledger row is deleted
    with warehouse.connect() as con:
        con.execute("UPDATE sync.ledger SET external_id = 'msg-by-hand', status = 'linked' "
                    "WHERE sync_name = 'doubt_receipts' AND record_key = 'p-1'")
        con.execute("DELETE FROM sync.ledger WHERE sync_name = 'doubt_receipts' AND record_key = 'p-2'")
    third = run_sync(_mailer_spec(), warehouse, settings, run_id="run-3")
    assert (third.created, third.plan.counts()["in_doubt"], third.plan.counts()["unchanged"]) == (1, 1, 1)


def test_a_journaled_email_is_not_re_sent_blindly_after_a_crash(settings, sandbox, sandbox_server):
    """A run journaled a receipt, sent it, and died before recording the answer: the next run cannot know whether it
    went out, and an email has no idempotency key, so it is held in doubt instead of being sent a second time."""
    warehouse = _load(settings, PEOPLE[:1], "person_key VARCHAR, name VARCHAR, email VARCHAR")
    spec = _mailer_spec()
    with warehouse.connect() as con:
        [record] = plan_sync(con, spec).creates
    batch = _Batch("create", [record], idempotency_key(spec, "create", [record]))
    _record(warehouse, spec, "create", [], "crashed", SyncResult(SyncPlan(), False), journal_next=batch)
    httpx.post(f"{sandbox_server.url}/email", headers={"X-Postmark-Server-Token": _mailer_token()},
               json={**MAILER_PAYLOAD, "To": "ivy@inkwell.example.com", "TextBody": "Thank you, Ivy Inkwell Ltd.",
                     "Metadata": {"idempotency_key": "p-1"}}).raise_for_status()
    sandbox.state.clear_requests()

    result = run_sync(spec, warehouse, settings, run_id="next")
    assert (result.created, result.resumed, result.in_doubt) == (0, 0, 1)
    assert _sends(sandbox) == 0 and _receipts(sandbox) == {"p-1": 1}
    assert warehouse_rows(settings, "SELECT count(*) FROM sync.pending") == [(0,)]


def _mailer_token() -> str:
    from integration_pipelines.connectors.registry import get_system

    return get_system("mailer").values["server_token"].sandbox


# == the HTTP client: a request that is not safe to repeat ===========================================================
def _client(*answers: object) -> tuple[HttpClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0) if queue else 200
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(int(answer), json={"id": 7} if answer == 200 else {"error": {"message": "no"}})

    client = HttpClient(system="fake", base_url="https://fake.test", transport=httpx.MockTransport(handler),
                        sleep=lambda _: None, retry=RetryPolicy(max_attempts=4))
    return client, seen


@pytest.mark.parametrize("failure", [500, 503, httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("cut")])
def test_an_unsafe_request_that_may_have_arrived_is_not_repeated(failure: object):
    client, seen = _client(failure, 200)
    with pytest.raises(OutcomeUnknownError, match="may or may not have been applied"):
        client.request("POST", "/things", json={}, replay_safe=False)
    assert len(seen) == 1
    safe, seen_safe = _client(failure, 200)
    assert safe.request("POST", "/things", json={}).status_code == 200 and len(seen_safe) == 2


@pytest.mark.parametrize("failure", [429, httpx.ConnectError("refused"), httpx.ConnectTimeout("no route")])
def test_an_unsafe_request_that_provably_never_arrived_is_retried(failure: object):
    client, seen = _client(failure, failure, 200)
    assert client.request("POST", "/things", json={}, replay_safe=False).json() == {"id": 7}
    assert len(seen) == 3


# == Odoo: records held in doubt are looked up again by the next run ===============================================
def test_odoo_records_held_in_doubt_are_linked_or_created_by_the_next_run(settings, sandbox):
    """Two orders were held in doubt by an earlier run (say the lookup itself failed then): the next run looks them
    up again. The one Odoo holds is linked, the one it does not is created by the run after, once."""
    partner = next(p["id"] for p in sandbox.emulator("odoo").dump("partners") if p.get("active", True))
    keys = ["pay:held-1", "pay:held-2"]
    warehouse = _load(settings, [(k, partner, f"Fulfil {k}") for k in keys],
                      "order_key VARCHAR, partner_id BIGINT, note VARCHAR")
    spec = _odoo_spec()
    run_sync(spec, warehouse, settings, run_id="plan-only", dry_run=True)  # the ledger tables
    odoo = sandbox.emulator("odoo")
    with odoo.sandbox.lock:  # the first order did reach Odoo
        existing = odoo._create_sale_order({"partner_id": partner, "client_order_ref": "pay:held-1",
                                            "note": "Fulfil pay:held-1"}, now="2026-03-09 10:00:00")
    with warehouse.connect() as con:
        con.executemany("INSERT INTO sync.ledger VALUES (?, ?, NULL, NULL, 'in_doubt', 1, 'held', NULL, 'r0')",
                        [[spec.name, k] for k in keys])

    first = run_sync(spec, warehouse, settings, run_id="run-1")
    assert first.plan.counts()["in_doubt"] == 2
    assert (first.linked, first.created, first.in_doubt) == (1, 0, 0)
    assert _ledger(settings, spec.name) == {"pay:held-1": (str(existing), "linked"), "pay:held-2": (None, "failed")}
    second = run_sync(spec, warehouse, settings, run_id="run-2")
    assert (second.created, second.linked) == (1, 0)
    orders = _odoo_orders(sandbox)
    assert {k: len(orders.get(k, [])) for k in keys} == {"pay:held-1": 1, "pay:held-2": 1}
    assert run_sync(spec, warehouse, settings, run_id="run-3").plan.counts()["unchanged"] == 2
