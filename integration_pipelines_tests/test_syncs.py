"""Outbound syncs end to end: sandbox → extract → core → sync → the target sandbox, asserted record by record."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import duckdb
import pytest

from integration_pipelines.assets.syncs import build_sync_asset
from integration_pipelines.resources import WarehouseResource
from integration_pipelines.syncs.engine import SyncFailedError, run_sync
from integration_pipelines.syncs.registry import get_sync
from integration_pipelines.warehouse.duckdb import Warehouse

from .conftest import ANCHOR, warehouse_rows
from .test_core_models import build, extract


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")


def open_invoices_of_stripe_customers(sandbox, count: int):
    stripe = sandbox.emulator("stripe")
    by_email = {c["email"]: c["id"] for c in stripe.objects["customers"].values()}
    invoices = [i for i in sandbox.state.world.invoices
                if not i.paid and not i.billed_via_stripe and i.person.email in by_email]
    assert len(invoices) >= count, "the seeded world must have open invoices of Stripe customers"
    return [(i, by_email[i.person.email]) for i in invoices[:count]]


def add_charge(sandbox, invoice, customer_id: str, amount: int, suffix: str) -> str:
    """A card payment arrives in Stripe for an invoice that is still open in QuickBooks."""
    charge_id = f"ch_test_{suffix}"
    sandbox.emulator("stripe").objects["charges"][charge_id] = {
        "id": charge_id, "object": "charge", "amount": amount, "amount_captured": amount, "amount_refunded": 0,
        "created": int((ANCHOR - timedelta(hours=6)).timestamp()), "currency": invoice.currency.lower(),
        "customer": customer_id, "invoice": None, "metadata": {"accounting_invoice": invoice.number},
        "paid": True, "refunded": False, "status": "succeeded", "livemode": False,
    }
    return charge_id


def qbo_payments_for(sandbox, invoice_number: str) -> list[dict]:
    qbo = sandbox.emulator("quickbooks")
    invoice = next(i for i in qbo.dump("invoices") if i["DocNumber"] == invoice_number)
    return [p for p in qbo.dump("payments")
            if any(link["TxnId"] == invoice["Id"] for line in p["Line"] for link in line["LinkedTxn"])
            and "stripe payment ch_test" in p.get("PrivateNote", "")]


def qbo_balance(sandbox, invoice_number: str) -> float:
    return next(float(i["Balance"]) for i in sandbox.emulator("quickbooks").dump("invoices")
                if i["DocNumber"] == invoice_number)


def prepare(settings, sandbox, charges: int = 3, settle_last_in_books: bool = False):
    """Charges for open invoices, extracted and built. `settle_last_in_books`: after the extract, the last invoice
    is paid in QuickBooks by hand, so the warehouse still sees it open and QuickBooks refuses the sync's payment
    as an overpayment (the source itself holds overpayments it can see)."""
    planted = []
    for n, (invoice, customer_id) in enumerate(open_invoices_of_stripe_customers(sandbox, charges)):
        planted.append((invoice, add_charge(sandbox, invoice, customer_id, invoice.amount, str(n))))
    extract(settings)
    build(settings)
    if settle_last_in_books:
        qbo = sandbox.emulator("quickbooks")
        with qbo.sandbox.lock:
            for record in qbo.objects["Invoice"].values():
                if record["DocNumber"] == planted[-1][0].number:
                    record["Balance"] = 0.0
    return planted


def sync(settings, name: str, **kwargs):
    return run_sync(get_sync(name), Warehouse(settings.warehouse_database), settings, run_id="test-run", **kwargs)


def posts_to(sandbox, system: str) -> list[dict]:
    return [r for r in sandbox.state.request_log(system) if r["method"] in {"POST", "PUT", "PATCH", "DELETE"}]


def test_payments_reach_accounting_once_and_a_rerun_sends_nothing(settings, sandbox):
    planted = prepare(settings, sandbox)
    result = sync(settings, "payments_to_quickbooks")
    assert (result.created, result.failed) == (len(planted), 0)
    for invoice, _ in planted:
        assert len(qbo_payments_for(sandbox, invoice.number)) == 1
        assert qbo_balance(sandbox, invoice.number) == 0
    ledger = warehouse_rows(settings, "SELECT count(*) FROM sync.ledger WHERE sync_name='payments_to_quickbooks' "
                                      "AND status='synced' AND external_id IS NOT NULL")
    assert ledger[0][0] == len(planted)

    sandbox.state.clear_requests()
    again = sync(settings, "payments_to_quickbooks")
    assert again.plan.counts()["creates"] == 0 and posts_to(sandbox, "quickbooks") == []
    # after the books are refreshed the paid invoices leave the model: still nothing to send
    extract(settings, ("quickbooks",))
    build(settings)
    # (the books now record them: matched to their charges, they are the payments this sync made)
    sandbox.state.clear_requests()
    counts = sync(settings, "payments_to_quickbooks").plan.counts()
    assert {k: counts[k] for k in ("creates", "updates", "deletes", "waiting")} == {
        "creates": 0, "updates": 0, "deletes": 0, "waiting": 0}
    assert "linked" not in counts
    assert [r for r in posts_to(sandbox, "quickbooks") if r["path"].endswith("/payment")] == []


def test_dry_run_sends_zero_requests(settings, sandbox):
    prepare(settings, sandbox)
    sandbox.state.clear_requests()
    result = sync(settings, "payments_to_quickbooks", dry_run=True)
    assert result.plan.counts()["creates"] == 3 and result.created == 0
    assert sandbox.state.request_log("quickbooks") == []
    assert result.samples[0]["payload"]["Line"][0]["LinkedTxn"][0]["TxnType"] == "Invoice"


def test_one_invalid_record_fails_alone_waits_for_its_backoff_and_does_not_fail_later_runs(settings, sandbox):
    planted = prepare(settings, sandbox, charges=5, settle_last_in_books=True)  # 1 in 5: under the 25% threshold
    bad_invoice, bad_charge = planted[-1]
    result = sync(settings, "payments_to_quickbooks")
    assert (result.created, result.failed) == (4, 1)
    assert [k for k, _, _ in result.new_failures] == [f"stripe:{bad_charge}"]
    errors = warehouse_rows(settings, "SELECT record_key, operation, message FROM sync.errors")
    assert errors[0][0] == f"stripe:{bad_charge}" and errors[0][1] == "create"
    assert "still open on invoice" in errors[0][2]
    assert qbo_payments_for(sandbox, bad_invoice.number) == []
    # right away, the refused record waits for its backoff (5 minutes): not sent, counted, no failure
    sandbox.state.clear_requests()
    waiting = sync(settings, "payments_to_quickbooks")
    assert waiting.plan.counts()["backoff"] == 1 and waiting.failed == 0
    assert [r for r in posts_to(sandbox, "quickbooks") if r["path"].endswith("/payment")] == []
    # once its backoff is over (five minutes pass) it is sent again; refused again, it is a known failure:
    # reported, not raised
    with duckdb.connect(settings.warehouse_database) as con:
        con.execute("UPDATE sync.attempts SET next_attempt_at = now() - INTERVAL 1 SECOND")
    again = sync(settings, "payments_to_quickbooks")
    assert (again.failed, again.new_failures) == (1, [])
    assert len([r for r in posts_to(sandbox, "quickbooks") if r["path"].endswith("/payment")]) == 1
    attempts = warehouse_rows(settings, "SELECT attempts, status FROM sync.ledger WHERE record_key = ?",
                              [f"stripe:{bad_charge}"])
    assert attempts == [(2, "failed")]


def test_twenty_percent_faults_end_in_the_same_state_without_duplicates(settings, sandbox, monkeypatch):
    planted = prepare(settings, sandbox, charges=4)
    monkeypatch.setenv("QUICKBOOKS_MAX_RETRIES", "12")
    # faults on writes: 5xx after the write may have happened, dropped answers, 429s
    sandbox.set_faults("quickbooks", error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                       methods=["POST"], seed=3)
    result = sync(settings, "payments_to_quickbooks")
    sandbox.clear_faults()
    assert result.failed == 0 and result.created == len(planted)
    for invoice, _ in planted:
        assert len(qbo_payments_for(sandbox, invoice.number)) == 1, "a retried write must not pay twice"
    assert any(r["fault"] for r in sandbox.state.request_log("quickbooks"))


def test_error_threshold_fails_the_asset_with_a_readable_message(settings, sandbox):
    prepare(settings, sandbox, charges=1, settle_last_in_books=True)
    with pytest.raises(SyncFailedError, match="1 of 1 records failed"):
        sync(settings, "payments_to_quickbooks")


def test_payment_status_upserts_hubspot_contacts_by_email(settings, sandbox):
    extract(settings)
    build(settings)
    result = sync(settings, "payment_status_to_hubspot")
    assert result.failed == 0 and result.created > 0
    hubspot = sandbox.emulator("hubspot")
    payers = warehouse_rows(settings, "SELECT email, last_payment_date FROM core.customers c JOIN "
                                      "(SELECT golden_customer_id, max(paid_at)::DATE::VARCHAR AS last_payment_date "
                                      "FROM core.payments WHERE kind='processor' GROUP BY 1) p "
                                      "ON p.golden_customer_id = c.golden_id WHERE list_contains(c.systems, 'hubspot')")
    contacts = {c["properties"]["email"].lower(): c for c in hubspot.dump("contacts") if c["properties"].get("email")}
    assert len(contacts) == len(hubspot.dump("contacts")), "upsert by email must not create duplicates"
    for email, last_date in payers:
        assert contacts[email]["properties"]["last_payment_date"] == last_date
    # a rerun sends nothing; a changed status is sent again
    sandbox.state.clear_requests()
    assert sync(settings, "payment_status_to_hubspot").plan.counts()["updates"] == 0
    assert posts_to(sandbox, "hubspot") == []


def test_sync_asset_in_dagster_with_dry_run_config(settings, sandbox):
    prepare(settings, sandbox)
    asset = build_sync_asset(get_sync("payments_to_quickbooks"), settings)
    sandbox.state.clear_requests()
    result = dg.materialize([asset], resources={"warehouse": WarehouseResource(database=settings.warehouse_database)},
                            run_config={"ops": {asset.op.name: {"config": {"dry_run": True}}}})
    metadata = result.asset_materializations_for_node(asset.op.name)[0].metadata
    assert metadata["planned_creates"].value == 3 and metadata["created"].value == 0
    assert sandbox.state.request_log("quickbooks") == []
    real = dg.materialize([asset], resources={"warehouse": WarehouseResource(database=settings.warehouse_database)})
    assert real.asset_materializations_for_node(asset.op.name)[0].metadata["created"].value == 3


def test_mirror_archives_what_left_the_model_and_only_then(settings, sandbox):
    from integration_pipelines.syncs.spec import SyncSpec

    spec = SyncSpec(
        name="vip_list_to_hubspot", title="VIP list → HubSpot", description="A mirror of a curated list.",
        source_sql="SELECT lower(email) AS email, name FROM main.vip_list", key="email", target="hubspot",
        mode="mirror", create_writer="upsert_contacts", update_writer="upsert_contacts",
        delete_writer="archive_contact",
        payload={"idProperty": "email", "id": "{email}", "properties": {"email": "{email}", "firstname": "{name}"}},
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(settings.warehouse_database) as con:
        con.execute("CREATE TABLE main.vip_list AS SELECT * FROM (VALUES ('vip1@example.test', 'Ann'), "
                    "('vip2@example.test', 'Bo'), ('vip3@example.test', 'Cy')) t(email, name)")
    warehouse = Warehouse(settings.warehouse_database)
    first = run_sync(spec, warehouse, settings, run_id="m1")
    assert (first.created, first.deleted, first.failed) == (3, 0, 0)
    hubspot = sandbox.emulator("hubspot")

    def live_vips() -> set[str]:
        return {c["properties"]["email"] for c in hubspot.dump("contacts")
                if (c["properties"].get("email") or "").startswith("vip") and not c["archived"]}

    assert live_vips() == {"vip1@example.test", "vip2@example.test", "vip3@example.test"}
    # an unchanged model archives nothing
    assert run_sync(spec, warehouse, settings, run_id="m2").plan.counts()["deletes"] == 0
    with duckdb.connect(settings.warehouse_database) as con:
        con.execute("DELETE FROM main.vip_list WHERE email = 'vip2@example.test'")
    third = run_sync(spec, warehouse, settings, run_id="m3")
    assert (third.deleted, third.created, third.updated) == (1, 0, 0)
    assert live_vips() == {"vip1@example.test", "vip3@example.test"}
    assert warehouse_rows(settings, "SELECT status FROM sync.ledger WHERE record_key = 'vip2@example.test'") == [
        ("deleted",)]
    sandbox.state.clear_requests()
    assert run_sync(spec, warehouse, settings, run_id="m4").plan.counts()["deletes"] == 0
    assert posts_to(sandbox, "hubspot") == []
