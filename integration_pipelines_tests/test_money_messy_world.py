"""Money in a messy world: each situation a real business has is planted through the vendors' own APIs
(`sandbox/messy.py`), the real pipeline runs over HTTP (extract → core → syncs → reconciliation), and the outcome is
read back from the books' own APIs (the QuickBooks and Xero emulators), with the expected values written by hand
from the planted record: exactly one books payment per real payment, each on the right entity's invoice, and the
reconciliation findings equal to what was planted, nothing missing and nothing extra.

The seeded tidy world already holds two disagreements (world.anomalies): a charge short by 1.00
(`amount_mismatch`) and a charge that names no invoice (`missing_in_accounting`). They are the baseline every test
expects besides its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stripe

from integration_pipelines.assets.reconciliation import build_all_reconciliations
from integration_pipelines.sandbox.app import Sandbox
from integration_pipelines.sandbox.messy import MessyWorld
from integration_pipelines.sandbox.server import SandboxServer
from integration_pipelines.sandbox.stripe import SANDBOX_API_KEY
from integration_pipelines.syncs.engine import SyncResult, run_sync
from integration_pipelines.syncs.registry import get_sync
from integration_pipelines.warehouse.duckdb import Warehouse

from .conftest import warehouse_rows
from .test_core_models import build, extract

SOURCES = ("stripe", "square", "hubspot", "quickbooks", "xero")
PAYMENT_SYNCS = ("payments_to_quickbooks", "payments_to_xero")
BASELINE = {"amount_mismatch", "missing_in_accounting"}


@pytest.fixture
def messy(sandbox_server: SandboxServer, sandbox: Sandbox) -> Iterator[MessyWorld]:
    with MessyWorld(sandbox_server.url) as planter:
        yield planter


def run_pipeline(settings) -> dict[str, SyncResult]:
    """What the nightly job does: read every source, build core, push the payments, read the books again,
    reconcile."""
    extract(settings, SOURCES)
    build(settings)
    results = {name: run_sync(get_sync(name), Warehouse(settings.warehouse_database), settings, run_id=f"run-{name}")
               for name in PAYMENT_SYNCS}
    extract(settings, ("quickbooks", "xero"))
    build(settings)
    with Warehouse(settings.warehouse_database).connect() as con:
        build_all_reconciliations(con)
    return results


def findings(settings) -> list[tuple[str, Any, Any]]:
    """(finding, processor payment, books payment) beyond the tidy world's two planted disagreements."""
    rows = warehouse_rows(settings, """
        SELECT finding, processor_payment_id, books_payment_id FROM reconciliation.payments_vs_accounting
        WHERE finding NOT IN ('matched') ORDER BY ALL""")
    baseline = [r for r in rows if r[0] in BASELINE and r[1] is not None and r[1].startswith("ch_")
                and not r[1].startswith("ch_messy")]
    return sorted(r for r in rows if r not in baseline or r[0] not in BASELINE)


def qbo_payments_on(sandbox: Sandbox, invoice_id: str) -> list[dict]:
    return [p for p in sandbox.emulator("quickbooks").dump("payments")
            if any(link["TxnId"] == invoice_id for line in p["Line"] for link in line["LinkedTxn"])]


def qbo_invoice(sandbox: Sandbox, invoice_id: str) -> dict:
    return next(i for i in sandbox.emulator("quickbooks").dump("invoices") if i["Id"] == invoice_id)


def xero_payments_on(sandbox: Sandbox, invoice_id: str) -> list[dict]:
    return [p for p in sandbox.emulator("xero").dump("payments") if p["Invoice"]["InvoiceID"] == invoice_id
            and p.get("Status") != "DELETED"]


def ledger(settings, sync: str, key: str) -> list[tuple]:
    return warehouse_rows(settings, "SELECT status, external_id FROM sync.ledger WHERE sync_name = ? "
                                    "AND record_key = ?", [sync, key])


def test_the_tidy_world_reconciles_to_its_two_planted_disagreements_and_books_nothing_twice(settings, sandbox):
    results = run_pipeline(settings)
    world = sandbox.state.world
    assert results["payments_to_quickbooks"].created == 0 and results["payments_to_xero"].created == 0
    rows = warehouse_rows(settings, "SELECT finding, processor_amount_minor FROM reconciliation.payments_vs_accounting "
                                    "WHERE finding <> 'matched' ORDER BY finding")
    short = next(p for p in world.payments if p.key == world.anomalies["payment_amount_mismatch"])
    orphan = next(p for p in world.payments if p.key == world.anomalies["payment_without_invoice"])
    assert rows == [("amount_mismatch", short.amount), ("missing_in_accounting", orphan.amount)]


@pytest.mark.parametrize("with_charge_id", [True, False], ids=["charge-id-in-memo", "amount-only"])
def test_a_card_payment_booked_by_hand_before_the_sync_is_linked_not_booked_again(settings, sandbox, messy,
                                                                                   with_charge_id):
    planted = messy.hand_booking("quickbooks", with_charge_id=with_charge_id)
    run_pipeline(settings)
    payments = qbo_payments_on(sandbox, planted["invoice_id"])
    # the bank transfer and the hand booking, nothing from the sync
    assert sorted(p["Id"] for p in payments) == sorted([planted["prior_payment_id"], planted["payment_id"]])
    assert float(qbo_invoice(sandbox, planted["invoice_id"])["Balance"]) == 0
    assert ledger(settings, "payments_to_quickbooks", f"stripe:{planted['charge_id']}")[0][1] == planted["payment_id"]
    assert findings(settings) == []


def test_a_hand_booking_after_the_sync_is_reported_as_a_possible_double_booking(settings, sandbox, messy,
                                                                                sandbox_server):
    invoice = next(i for i in messy.books_invoices("quickbooks") if i.balance == i.total and i.currency == "USD"
                   and i.country == "US" and i.stripe_customer_id and i.balance >= 2000)
    first_part = 1000  # the customer pays 10.00 of it by card: the invoice stays open for the rest
    client = stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": sandbox_server.url}, max_network_retries=0)
    charge = client.charges.create(params={
        "customer": invoice.stripe_customer_id, "amount": first_part, "currency": "usd", "source": "tok_visa",
        "metadata": {"accounting_invoice": invoice.number}})
    run_pipeline(settings)
    assert len(qbo_payments_on(sandbox, invoice.invoice_id)) == 1
    # the bookkeeper did not see the sync's payment and books the same card payment again, without its id
    again = messy.hand_booking("quickbooks", invoice_number=invoice.number, charge_id=charge.id,
                               with_charge_id=False, paid_before=0, amount=first_part)
    run_pipeline(settings)
    assert len(qbo_payments_on(sandbox, invoice.invoice_id)) == 2  # the sync added nothing
    assert findings(settings) == [("possible_duplicate_in_books", charge.id, again["payment_id"])]


def test_installments_each_booked_once_and_the_invoice_settled(settings, sandbox, messy):
    planted = messy.installments("quickbooks", parts=3)
    results = run_pipeline(settings)
    assert results["payments_to_quickbooks"].created == 3
    payments = qbo_payments_on(sandbox, planted["invoice_id"])
    assert sorted(round(float(p["TotalAmt"]) * 100) for p in payments) == sorted(planted["amounts"])
    assert all(any(c in p["PrivateNote"] for c in planted["charge_ids"]) for p in payments)
    assert float(qbo_invoice(sandbox, planted["invoice_id"])["Balance"]) == 0
    assert findings(settings) == []
    assert warehouse_rows(settings, "SELECT count(*) FROM reconciliation.invoices_vs_payments") == [(0,)]
    # the next night books nothing more
    assert run_pipeline(settings)["payments_to_quickbooks"].created == 0


def test_a_deposit_over_several_invoices_is_no_disagreement(settings, sandbox, messy):
    planted = messy.deposit("quickbooks", count=2)
    results = run_pipeline(settings)
    assert results["payments_to_quickbooks"].created == 0
    for invoice_id in planted["invoice_ids"]:
        assert float(qbo_invoice(sandbox, invoice_id)["Balance"]) == 0
    assert findings(settings) == []


def test_one_charge_for_several_invoices_is_one_books_payment_with_a_line_per_invoice(settings, sandbox, messy):
    planted = messy.charge_for_several_invoices("quickbooks", count=2)
    results = run_pipeline(settings)
    assert results["payments_to_quickbooks"].created == 1
    booked = [p for p in sandbox.emulator("quickbooks").dump("payments") if planted["charge_id"] in
              p.get("PrivateNote", "")]
    assert len(booked) == 1
    lines = sorted((link["TxnId"], round(line["Amount"] * 100)) for line in booked[0]["Line"]
                   for link in line["LinkedTxn"])
    assert lines == sorted(zip(planted["invoice_ids"], planted["amounts"], strict=True))
    for invoice_id in planted["invoice_ids"]:
        assert float(qbo_invoice(sandbox, invoice_id)["Balance"]) == 0
    assert findings(settings) == []


def test_the_same_invoice_number_at_two_entities_is_paid_on_each_entitys_own_invoice(settings, sandbox, messy):
    planted = messy.colliding_invoice_numbers("INV-0042", us_amount=24000, uk_amount=19000)
    us, uk = planted["invoices"]
    assert (us["system"], us["currency"], uk["system"], uk["currency"]) == ("quickbooks", "USD", "xero", "GBP")
    run_pipeline(settings)
    us_payments = qbo_payments_on(sandbox, us["invoice_id"])
    assert [(round(float(p["TotalAmt"]) * 100), us["charge_id"] in p["PrivateNote"]) for p in us_payments] == [
        (24000, True)]
    uk_payments = xero_payments_on(sandbox, uk["invoice_id"])
    assert [(round(p["Amount"] * 100), uk["charge_id"] in p["Reference"]) for p in uk_payments] == [(19000, True)]
    # and neither charge landed in the other entity's books
    every_qbo_note = " ".join(p.get("PrivateNote", "") for p in sandbox.emulator("quickbooks").dump("payments"))
    every_xero_reference = " ".join(p.get("Reference", "") for p in sandbox.emulator("xero").dump("payments"))
    assert uk["charge_id"] not in every_qbo_note and us["charge_id"] not in every_xero_reference
    assert findings(settings) == []


def test_a_uk_card_payment_booked_by_hand_in_xero_is_linked_not_booked_again(settings, sandbox, messy):
    planted = messy.hand_booking("xero", with_charge_id=True)
    run_pipeline(settings)
    assert sorted(p["PaymentID"] for p in xero_payments_on(sandbox, planted["invoice_id"])) == sorted(
        [planted["prior_payment_id"], planted["payment_id"]])
    assert findings(settings) == []


def test_a_refund_long_after_the_charge_reaches_the_warehouse_with_no_webhook(settings, sandbox, messy):
    planted = messy.late_refund()
    extract(settings, ("stripe",))
    build(settings)
    assert warehouse_rows(settings, "SELECT refunded_minor, status FROM core.payments WHERE source_id = ?",
                          [planted["charge_id"]]) == [(planted["amount"], "refunded")]


def test_a_customer_who_pays_an_invoice_twice_is_booked_once_and_reported(settings, sandbox, messy, sandbox_server):
    invoice = next(i for i in messy.books_invoices("quickbooks") if i.balance == i.total and i.currency == "USD"
                   and i.country == "US" and i.stripe_customer_id)
    client = stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": sandbox_server.url}, max_network_retries=0)
    first, second = (client.charges.create(params={
        "customer": invoice.stripe_customer_id, "amount": invoice.total, "currency": "usd", "source": "tok_visa",
        "metadata": {"accounting_invoice": invoice.number}}) for _ in range(2))
    results = run_pipeline(settings)
    assert (results["payments_to_quickbooks"].created, results["payments_to_quickbooks"].failed) == (1, 0)
    # one of the two (the first money in; in the same second, the lower id) settles the invoice
    [booked] = [p["PrivateNote"].removeprefix("stripe payment ") for p in qbo_payments_on(sandbox, invoice.invoice_id)]
    assert booked in (first.id, second.id)
    other = second.id if booked == first.id else first.id
    assert findings(settings) == [("invoice_already_paid", other, None)]
    assert run_pipeline(settings)["payments_to_quickbooks"].failed == 0  # and no failing write the next night


def _paying_contact(sandbox: Sandbox) -> str:
    """The lowest-id HubSpot contact of a customer who pays by card (so the payment-status sync writes to it)."""
    stripe_emails = {c["email"].lower() for c in sandbox.emulator("stripe").dump("customers") if c.get("email")}
    paying = {c["customer"] for c in sandbox.emulator("stripe").dump("charges") if c["status"] == "succeeded"}
    paying_emails = {c["email"].lower() for c in sandbox.emulator("stripe").dump("customers") if c["id"] in paying}
    contacts = [c for c in sandbox.emulator("hubspot").dump("contacts") if not c.get("archived")
                and (c["properties"].get("email") or "").lower() in paying_emails & stripe_emails]
    return min(contacts, key=lambda c: int(c["id"]))["id"]


@pytest.mark.parametrize("kind", ["crm_delete", "crm_merge"])
def test_a_contact_deleted_or_merged_away_in_the_crm_is_not_synced_back(settings, sandbox, messy, kind):
    hubspot = sandbox.emulator("hubspot")
    extract(settings, ("stripe", "hubspot", "quickbooks"))  # the contact is in the warehouse
    contact = _paying_contact(sandbox)
    if kind == "crm_delete":
        planted = messy.crm_delete(contact_id=contact)
        gone, gone_email = planted["contact_id"], planted["email"].lower()
    else:  # the paying contact is merged away into a duplicate the sales rep keeps
        keep = next(c["id"] for c in hubspot.dump("contacts") if not c.get("archived") and c["id"] != contact)
        planted = messy.crm_merge(primary_id=keep, merged_id=contact)
        gone, gone_email = planted["merged_id"], planted["merged_email"].lower()
    before = {c["id"] for c in hubspot.dump("contacts")}
    extract(settings, ("hubspot",))
    build(settings)
    assert warehouse_rows(settings, "SELECT count(*) FROM staging.customer_records WHERE source_system = 'hubspot' "
                                    "AND source_id = ?", [gone]) == [(0,)]
    run_sync(get_sync("payment_status_to_hubspot"), Warehouse(settings.warehouse_database), settings, run_id="status")
    created = [c for c in hubspot.dump("contacts") if c["id"] not in before]
    # nothing was created for the gone contact's email: the CRM's own decision stands
    assert [c["id"] for c in created if (c["properties"].get("email") or "").lower() == gone_email] == []


def test_a_card_payment_of_a_draft_invoice_waits_for_its_approval(settings, sandbox, messy, sandbox_server):
    stripe_by_email = {c["email"].lower(): c["id"] for c in sandbox.emulator("stripe").dump("customers")
                       if c.get("email")}
    contacts = {c["ContactID"]: c for c in sandbox.emulator("xero").dump("contacts")}
    draft = next(i for i in sandbox.emulator("xero").dump("invoices") if i["Status"] == "DRAFT"
                 and i["CurrencyCode"] == "GBP"
                 and (contacts[i["Contact"]["ContactID"]].get("EmailAddress") or "").lower() in stripe_by_email)
    customer = stripe_by_email[contacts[draft["Contact"]["ContactID"]]["EmailAddress"].lower()]
    client = stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": sandbox_server.url}, max_network_retries=0)
    charge = client.charges.create(params={
        "customer": customer, "amount": round(draft["Total"] * 100), "currency": "gbp", "source": "tok_visa",
        "metadata": {"accounting_invoice": draft["InvoiceNumber"]}})
    results = run_pipeline(settings)
    assert (results["payments_to_xero"].created, results["payments_to_xero"].failed) == (0, 0)
    assert xero_payments_on(sandbox, draft["InvoiceID"]) == []
    assert findings(settings) == [("invoice_is_draft", charge.id, None)]
