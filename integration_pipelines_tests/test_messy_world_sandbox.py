"""The messy world: each anomaly kind planted through the vendors' APIs, read back through those APIs (or the
vendors' official SDKs), with the expected values written by hand from the seeded world (seed 7, anchored
2026-03-10, three days: see conftest.py). Every test starts from a fresh tidy world (the `sandbox` fixture), so
the defaults below pick the same invoices on every machine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from hubspot import HubSpot
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from integration_pipelines.background_server import BackgroundServer
from integration_pipelines.connectors.hubspot import SYSTEM as HUBSPOT
from integration_pipelines.connectors.quickbooks import SYSTEM as QUICKBOOKS
from integration_pipelines.connectors.stripe import SYSTEM as STRIPE
from integration_pipelines.connectors.xero import API_ROOT
from integration_pipelines.connectors.xero import SYSTEM as XERO
from integration_pipelines.sandbox.app import Sandbox
from integration_pipelines.sandbox.messy import BEFORE_KINDS, MessyError, MessyWorld
from integration_pipelines.sandbox.server import SandboxServer
from integration_pipelines.sandbox.xero import TOKEN_PATH
from integration_pipelines.webhooks.config import SANDBOX_SECRETS

from .conftest import ANCHOR, WORLD_DAYS

US = "Acme Trading Inc (US)"
UK = "Acme Trading Ltd (UK)"


@pytest.fixture
def messy(sandbox_server: SandboxServer, sandbox: Sandbox) -> Iterator[MessyWorld]:
    with MessyWorld(sandbox_server.url) as planter:
        yield planter


@pytest.fixture
def qbo(sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """python-quickbooks pointed at the sandbox, as in test_quickbooks.py."""
    import quickbooks
    from intuitlib.client import AuthClient

    values = QUICKBOOKS.values
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    auth = AuthClient(values["client_id"].sandbox, values["client_secret"].sandbox, "http://localhost/callback",
                      environment=sandbox_server.url + "/.well-known/openid_configuration",
                      refresh_token=values["refresh_token"].sandbox)
    client = quickbooks.QuickBooks(auth_client=auth, refresh_token=values["refresh_token"].sandbox,
                                   company_id=values["realm_id"].sandbox, minorversion=75)
    client.api_url_v3 = sandbox_server.url + "/v3"
    return client


@pytest.fixture
def xero(sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """xero-python's AccountingApi pointed at the sandbox, as in test_xero.py."""
    from xero_python.accounting import AccountingApi
    from xero_python.api_client import ApiClient, Configuration
    from xero_python.api_client.oauth2 import OAuth2Token, TokenApi

    values = XERO.values
    monkeypatch.setattr(TokenApi, "refresh_token_url", sandbox_server.url + TOKEN_PATH)
    stored = {"access_token": "expired", "refresh_token": values["refresh_token"].sandbox,
              "scope": ["accounting.transactions"], "expires_in": 1800, "expires_at": 0.0, "token_type": "Bearer"}
    api_client = ApiClient(Configuration(oauth2_token=OAuth2Token(client_id=values["client_id"].sandbox,
                                                                  client_secret=values["client_secret"].sandbox)),
                           pool_threads=1, oauth2_token_getter=lambda: stored, oauth2_token_saver=stored.update)
    return AccountingApi(api_client, base_url=sandbox_server.url + API_ROOT)


@pytest.fixture
def stripe_client(sandbox_server: SandboxServer) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE.values["api_key"].sandbox, base_addresses={"api": sandbox_server.url},
                               max_network_retries=0)


@pytest.fixture
def hubspot(sandbox_server: SandboxServer) -> HubSpot:
    return HubSpot(access_token=HUBSPOT.values["token"].sandbox, host=sandbox_server.url)


TENANT = XERO.values["tenant_id"].sandbox


def _qbo_payment(qbo: Any, payment_id: str) -> Any:
    from quickbooks.objects.payment import Payment

    return Payment.get(payment_id, qb=qbo)


def _qbo_invoice(qbo: Any, invoice_id: str) -> Any:
    from quickbooks.objects.invoice import Invoice

    return Invoice.get(invoice_id, qb=qbo)


def _enum(value: Any) -> str:
    """xero-python hands enums back; compare their values."""
    return str(getattr(value, "value", value))


def _charges_for(stripe_client: stripe.StripeClient, key: str, value: str) -> list[Any]:
    return [c for c in stripe_client.v1.charges.list(params={"limit": 100}).auto_paging_iter()
            if c.to_dict().get("metadata", {}).get(key) == value]


# -- the control endpoint -------------------------------------------------------------------------------------
def test_anomalies_endpoint_keeps_the_seeded_keys_and_appends_planted_records(sandbox_server, sandbox):
    url = sandbox_server.url + "/_sandbox/world/anomalies"
    before = httpx.get(url).json()
    assert before == {"crm_email_case_differs": 0, "crm_duplicate_contact": 4, "payment_without_invoice": 34,
                      "payment_amount_mismatch": 0, "planted": []}
    created = httpx.post(url, json={"kind": "note", "system": "quickbooks", "amount": 100})
    assert created.status_code == 201
    assert created.json() == {"kind": "note", "system": "quickbooks", "amount": 100, "seq": 1}
    assert httpx.post(url, json={"system": "quickbooks"}).status_code == 400
    assert httpx.post(url, json=["kind"]).status_code == 400
    assert httpx.post(url, content=b"{not json").status_code == 400
    assert httpx.get(url).json()["planted"] == [{"kind": "note", "system": "quickbooks", "amount": 100, "seq": 1}]
    sandbox.reset()
    assert httpx.get(url).json()["planted"] == [], "a reset tidy world forgets what was planted"


# -- books -------------------------------------------------------------------------------------------------------
def test_hand_booking_in_quickbooks_with_the_charge_id(messy, qbo, stripe_client):
    record = messy.hand_booking("quickbooks", with_charge_id=True)
    # INV-1058 ($180.00, customer 10) is the lowest-id open US invoice whose customer pays through Stripe
    assert (record["invoice_number"], record["currency"], record["legal_entity"]) == ("INV-1058", "USD", US)
    assert (record["invoice_total"], record["paid_before"], record["amount"], record["balance_after"]) == (
        18000, 7200, 10800, 0)
    invoice = _qbo_invoice(qbo, record["invoice_id"])
    assert invoice.DocNumber == "INV-1058" and invoice.Balance == 0
    assert sorted(t.TxnId for t in invoice.LinkedTxn) == sorted([record["prior_payment_id"], record["payment_id"]])
    prior, card = _qbo_payment(qbo, record["prior_payment_id"]), _qbo_payment(qbo, record["payment_id"])
    assert (prior.TotalAmt, prior.PaymentRefNum) == (72.0, "BANK-TRANSFER")
    assert card.TotalAmt == 108.0 and card.Line[0].LinkedTxn[0].TxnId == record["invoice_id"]
    charge_id = record["charge_id"]
    assert card.PaymentRefNum == charge_id[:21] and charge_id in card.PrivateNote
    charge = stripe_client.v1.charges.retrieve(charge_id)
    assert (charge.amount, charge.currency, charge.metadata["accounting_invoice"]) == (10800, "usd", "INV-1058")
    assert messy.anomalies()["planted"] == [record]


def test_hand_booking_in_xero_without_the_charge_id_and_after_a_partial_payment(messy, xero, stripe_client):
    first = messy.hand_booking("xero", with_charge_id=False, amount=500)
    # INV-1020 (£15.00) is the lowest-numbered authorised GB invoice whose contact pays through Stripe
    assert (first["invoice_number"], first["currency"], first["legal_entity"]) == ("INV-1020", "GBP", UK)
    assert (first["paid_before"], first["amount"], first["balance_after"]) == (600, 500, 400)
    invoice = xero.get_invoice(TENANT, first["invoice_id"]).invoices[0]
    assert (invoice.amount_paid, invoice.amount_due, _enum(invoice.status)) == (11.0, 4.0, "AUTHORISED")
    card = xero.get_payment(TENANT, first["payment_id"]).payments[0]
    assert card.amount == 5.0 and "ch_" not in card.reference
    assert stripe_client.v1.charges.retrieve(first["charge_id"]).amount == 500

    # later (after a sync, say) the bookkeeper books the rest of the same, now partly paid, invoice
    second = messy.hand_booking("xero", invoice_number="INV-1020", with_charge_id=True)
    assert (second["paid_before"], second["amount"], second["balance_after"], second["prior_payment_id"]) == (
        0, 400, 0, None)
    invoice = xero.get_invoice(TENANT, first["invoice_id"]).invoices[0]
    assert (invoice.amount_due, _enum(invoice.status)) == (0.0, "PAID")
    assert xero.get_payment(TENANT, second["payment_id"]).payments[0].reference == second["charge_id"]
    assert [r["kind"] for r in messy.anomalies()["planted"]] == ["hand_booking", "hand_booking"]


def test_installments_are_three_charges_summing_to_the_invoice(messy, qbo, stripe_client):
    record = messy.installments(parts=3)
    assert (record["invoice_number"], record["invoice_total"], record["amounts"]) == (
        "INV-1058", 18000, [6000, 6000, 6000])
    charges = _charges_for(stripe_client, "accounting_invoice", "INV-1058")
    assert sorted(c.id for c in charges) == sorted(record["charge_ids"])
    assert sum(c.amount for c in charges) == 18000 and {c.currency for c in charges} == {"usd"}
    assert _qbo_invoice(qbo, record["invoice_id"]).Balance == 180.0, "the books are the sync's job"

    two = messy.installments(invoice_number="INV-1001", amounts=[100000, 59600])
    assert (two["invoice_number"], two["charge_ids"][0] != two["charge_ids"][1]) == ("INV-1001", True)
    with pytest.raises(ValueError):
        messy.installments(amounts=[1, 2])


def test_deposit_is_one_quickbooks_payment_over_two_invoices(messy, qbo):
    record = messy.deposit()
    # customer 10 is the first with two open US invoices: INV-1058 ($180.00) and INV-1001 ($1,596.00)
    assert (record["invoice_numbers"], record["amounts"], record["total"]) == (
        ["INV-1058", "INV-1001"], [18000, 159600], 177600)
    assert record["created_invoices"] == [] and record["customer_id"] == "10"
    payment = _qbo_payment(qbo, record["payment_id"])
    assert payment.TotalAmt == 1776.0 and payment.UnappliedAmt == 0
    assert [(line.Amount, line.LinkedTxn[0].TxnId) for line in payment.Line] == [
        (180.0, record["invoice_ids"][0]), (1596.0, record["invoice_ids"][1])]
    assert [_qbo_invoice(qbo, i).Balance for i in record["invoice_ids"]] == [0, 0]


def test_one_charge_for_several_invoices_names_them_all(messy, qbo, stripe_client):
    messy.deposit()  # takes customer 10's two invoices: the charge needs a second invoice issued
    record = messy.charge_for_several_invoices()
    # INV-1041 ($2,400.00, customer 16) plus INV-1061, issued now for $175.00 to the same customer
    assert record["invoice_numbers"] == ["INV-1041", "INV-1061"] and record["created_invoices"] == ["INV-1061"]
    assert (record["amount"], record["amounts"]) == (257500, [240000, 17500])
    charge = stripe_client.v1.charges.retrieve(record["charge_id"])
    assert charge.to_dict()["metadata"] == {"accounting_invoices": "INV-1041,INV-1061"}
    assert (charge.amount, charge.currency) == (257500, "usd")
    issued = _qbo_invoice(qbo, record["invoice_ids"][1])
    assert (issued.DocNumber, issued.TotalAmt, issued.CustomerRef.value) == ("INV-1061", 175.0, "16")


def test_colliding_invoice_numbers_across_entities(messy, qbo, xero, stripe_client):
    from quickbooks.objects.invoice import Invoice

    record = messy.colliding_invoice_numbers()
    us, uk = record["invoices"]
    assert (us["system"], us["legal_entity"], us["currency"], us["amount"]) == ("quickbooks", US, "USD", 24000)
    assert (uk["system"], uk["legal_entity"], uk["currency"], uk["amount"]) == ("xero", UK, "GBP", 19000)
    [books_us] = Invoice.filter(DocNumber="INV-0042", qb=qbo)
    assert (books_us.TotalAmt, books_us.CurrencyRef.value, books_us.CustomerRef.value) == (240.0, "USD", "10")
    [books_uk] = xero.get_invoices(TENANT, where='InvoiceNumber=="INV-0042"').invoices
    assert (books_uk.total, _enum(books_uk.currency_code), str(books_uk.contact.contact_id)) == (
        190.0, "GBP", uk["customer_id"])
    charges = _charges_for(stripe_client, "accounting_invoice", "INV-0042")
    assert sorted((c.currency, c.amount) for c in charges) == [("gbp", 19000), ("usd", 24000)]
    assert sorted(c.id for c in charges) == sorted([us["charge_id"], uk["charge_id"]])


# -- processor --------------------------------------------------------------------------------------------------
def test_late_refund_on_an_old_charge(messy, stripe_client):
    record = messy.late_refund()
    # the oldest charge paying an invoice: INV-1013, $273.00, from the seeded history months ago
    assert (record["invoice_number"], record["amount"], record["currency"]) == ("INV-1013", 27300, "USD")
    assert record["refund_created"] - record["charge_created"] > 2 * 86400
    charge = stripe_client.v1.charges.retrieve(record["charge_id"])
    assert (charge.amount_refunded, charge.refunded) == (27300, True)
    refunds = list(stripe_client.v1.refunds.list(params={"charge": record["charge_id"]}).auto_paging_iter())
    assert [r.id for r in refunds] == [record["refund_id"]]


def test_dispute_on_a_charge(messy, stripe_client):
    record = messy.dispute()
    # the newest seeded charge paying an invoice: INV-1036, $150.00
    assert (record["invoice_number"], record["amount"], record["currency"]) == ("INV-1036", 15000, "USD")
    dispute = stripe_client.v1.disputes.retrieve(record["dispute_id"])
    assert (dispute.charge, dispute.status, dispute.reason) == (
        record["charge_id"], "needs_response", "product_not_received")
    assert stripe_client.v1.charges.retrieve(record["charge_id"]).disputed is True


def test_customer_change_on_an_old_customer(messy, stripe_client):
    record = messy.customer_change(address_country="GB")
    # the oldest Stripe customer with an email
    assert record["before"]["email"] == "hedy.thompson24@hooli0.example.com"
    assert record["after"]["email"] == "hedy.thompson24+billing@hooli0.example.com"
    assert record["changed_fields"] == ["address", "email"] and record["legal_entity"] == UK
    customer = stripe_client.v1.customers.retrieve(record["stripe_customer_id"])
    assert customer.email == "hedy.thompson24+billing@hooli0.example.com" and customer.address.country == "GB"
    [event] = [e for e in stripe_client.v1.events.list(params={"type": "customer.updated"}).auto_paging_iter()
               if e.data.object.id == customer.id]
    assert event.data.previous_attributes["email"] == "hedy.thompson24@hooli0.example.com"


# -- CRM ----------------------------------------------------------------------------------------------------------
def test_crm_delete_archives_the_contact(messy, hubspot):
    from hubspot.crm.contacts.exceptions import NotFoundException

    record = messy.crm_delete()
    assert record["email"] == "sophie.hopper28@globex4.example.com"
    with pytest.raises(NotFoundException):
        hubspot.crm.contacts.basic_api.get_by_id(record["contact_id"])
    archived = {c.id: c for c in hubspot.crm.contacts.get_all(archived=True)}
    assert archived[record["contact_id"]].archived is True


def test_crm_merge_keeps_both_ids_on_the_primary(messy, hubspot):
    record = messy.crm_merge()
    assert record["primary_email"] == "sophie.hopper28@globex4.example.com"
    assert record["merged_email"].endswith("@personal.example.net") and record["duplicate_created"] is True
    assert record["result_id"] == record["primary_id"]
    props = ["email", "hs_merged_object_ids", "hs_all_contact_vids", "hs_additional_emails"]
    primary = hubspot.crm.contacts.basic_api.get_by_id(record["primary_id"], properties=props)
    assert primary.properties["hs_merged_object_ids"] == record["merged_id"]
    assert primary.properties["hs_all_contact_vids"] == f"{record['primary_id']};{record['merged_id']}"
    assert primary.properties["hs_additional_emails"] == record["merged_email"]
    # reading the merged-away id answers with the record it went into
    assert hubspot.crm.contacts.basic_api.get_by_id(record["merged_id"]).id == record["primary_id"]
    archived = {c.id for c in hubspot.crm.contacts.get_all(archived=True)}
    live = {c.id for c in hubspot.crm.contacts.get_all()}
    assert record["merged_id"] in archived and record["merged_id"] not in live and record["primary_id"] in live


def test_hubspot_sdk_merges_contacts(sandbox, hubspot):
    from hubspot.crm.contacts import PublicMergeInput

    first, second = sorted((c for c in hubspot.crm.contacts.get_all()), key=lambda c: int(c.id))[:2]
    merged = hubspot.crm.contacts.basic_api.merge(
        PublicMergeInput(primary_object_id=first.id, object_id_to_merge=second.id))
    assert merged.id == first.id and merged.archived is False
    again = hubspot.crm.contacts.basic_api.get_by_id(second.id, properties=["hs_merged_object_ids"])
    assert again.id == first.id and again.properties["hs_merged_object_ids"] == second.id


# -- webhook deliveries --------------------------------------------------------------------------------------------
class _Capture:
    """A receiver that verifies Stripe's signature with the official SDK and keeps what arrived, in order."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/webhooks/stripe", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        event = stripe.Webhook.construct_event(body.decode(), request.headers["stripe-signature"],
                                               SANDBOX_SECRETS["stripe_webhook_secret"])
        with self.lock:
            self.received.append(json.loads(body) | {"_verified_id": event.id})
        return Response(status_code=200)


@pytest.fixture
def receiver() -> Iterator[tuple[str, _Capture]]:
    capture = _Capture()
    server = BackgroundServer(capture.app, name="capture-receiver").start()
    yield server.url, capture
    server.stop()


def test_webhooks_late_out_of_order_twice_and_replayed(messy, receiver):
    url, capture = receiver
    late = messy.webhook_late(url)
    old, new = late["event_ids"]
    assert [e["id"] for e in capture.received] == [new, old], "the older event arrives after the newer one"
    assert late["held_event_id"] == old and late["newest_event_id"] == new
    assert late["expected_final"]["email"] == "hedy.thompson24+v2@hooli0.example.com"
    assert [d["status"] for d in late["deliveries"]] == [200, 200]

    capture.received.clear()
    shuffled = messy.webhook_out_of_order(url)
    assert [e["id"] for e in capture.received] == list(reversed(shuffled["event_ids"]))
    assert [e["data"]["object"]["email"] for e in capture.received] == [
        f"{local}+v{n}@{domain}" for n in (3, 2, 1)
        for local, domain in [shuffled["expected_final"]["email"].split("+v3@")]]

    capture.received.clear()
    twice = messy.webhook_twice(url)
    assert [e["id"] for e in capture.received] == twice["event_ids"] * 2
    assert capture.received[0] == capture.received[1]

    capture.received.clear()
    replayed = messy.webhook_replayed(url)
    first, second = capture.received
    assert [first["id"], second["id"]] == [replayed["original_event_id"], replayed["replay_event_id"]]
    assert first["id"] != second["id"] and first["data"] == second["data"] and first["type"] == second["type"]
    kinds = [r["kind"] for r in messy.anomalies()["planted"]]
    assert kinds == ["webhook_late", "webhook_out_of_order", "webhook_twice", "webhook_replayed"]


# -- the switch -------------------------------------------------------------------------------------------------------
def test_messy_world_plants_the_before_set_at_start_and_again_after_a_reset():
    server = SandboxServer(Sandbox(seed=7, anchor=ANCHOR, days=WORLD_DAYS, world="messy")).start()
    try:
        url = server.url + "/_sandbox/world/anomalies"
        planted = httpx.get(url).json()["planted"]
        assert [r["kind"] for r in planted] == list(BEFORE_KINDS)
        assert [r["seq"] for r in planted] == list(range(1, len(BEFORE_KINDS) + 1))
        facts = {r["kind"] + str(i): r for i, r in enumerate(planted)}
        assert facts["deposit0"]["invoice_numbers"] == ["INV-1058", "INV-1001"]
        assert facts["charge_for_several_invoices1"]["invoice_numbers"] == ["INV-1041", "INV-1061"]
        assert (facts["installments2"]["invoice_number"], facts["installments2"]["amounts"]) == (
            "INV-1053", [85250, 85250, 85250])
        assert (facts["hand_booking3"]["invoice_number"], facts["hand_booking3"]["with_charge_id"]) == (
            "INV-1054", True)
        assert (facts["hand_booking4"]["invoice_number"], facts["hand_booking4"]["system"],
                facts["hand_booking4"]["with_charge_id"]) == ("INV-1020", "xero", False)
        assert facts["colliding_invoice_numbers5"]["invoice_number"] == "INV-0042"
        assert facts["late_refund6"]["invoice_number"] == "INV-1013"
        assert facts["dispute7"]["invoice_number"] == "INV-1036"
        assert facts["crm_delete9"]["email"] == "sophie.hopper28@globex4.example.com"
        shape = [(r["kind"], r.get("invoice_number"), r.get("invoice_numbers")) for r in planted]

        server.sandbox.reset()
        again = httpx.get(url).json()["planted"]
        assert [(r["kind"], r.get("invoice_number"), r.get("invoice_numbers")) for r in again] == shape
        assert httpx.post(server.url + "/_sandbox/reset").json() == {"reset": True}
        assert len(httpx.get(url).json()["planted"]) == len(BEFORE_KINDS)
    finally:
        server.stop()


def test_unknown_world_is_refused():
    with pytest.raises(ValueError, match="unknown world"):
        Sandbox(world="chaotic")


def test_the_projects_receiver_acknowledges_every_messy_delivery(messy, tmp_path, monkeypatch):
    from integration_pipelines.webhooks.server import ReceiverServer
    from integration_pipelines.webhooks.testing import make_receiver, scrubbed_environment_names

    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    receiver, _, _ = make_receiver(tmp_path / "store")
    with ReceiverServer(receiver) as server:
        records = messy.plant_webhooks(server.url)
    assert [d["status"] for r in records for d in r["deliveries"]] == [200] * 9
    landed = sorted((tmp_path / "store" / "landing").rglob("*.json"))
    # 2 late + 3 out of order + 1 (the second copy of the same event id is a duplicate) + 2 replayed (new id)
    assert len(landed) == 8


# -- the emulator endpoints the planter relies on, judged by the official SDKs ---------------------------------------
def test_python_quickbooks_books_a_numbered_invoice_and_a_payment_over_two_invoices(sandbox, qbo):
    from quickbooks.exceptions import QuickbooksException
    from quickbooks.objects.base import Ref
    from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail
    from quickbooks.objects.invoice import Invoice
    from quickbooks.objects.payment import Payment, PaymentLine

    invoice = Invoice()
    invoice.DocNumber = "INV-0042"
    invoice.CustomerRef = Ref()
    invoice.CustomerRef.value = "10"
    invoice.CurrencyRef = Ref()
    invoice.CurrencyRef.value = "USD"
    line = SalesItemLine()
    line.Amount = 240.0
    line.SalesItemLineDetail = SalesItemLineDetail()
    line.SalesItemLineDetail.ItemRef = Ref()
    line.SalesItemLineDetail.ItemRef.value = "4"
    invoice.Line = [line]
    saved = invoice.save(qb=qbo)
    assert (saved.DocNumber, saved.TotalAmt, saved.CurrencyRef.value) == ("INV-0042", 240.0, "USD")

    payment = Payment()
    payment.CustomerRef = Ref()
    payment.CustomerRef.value = "10"
    payment.TotalAmt = 420.0
    payment.PaymentRefNum = "DEPOSIT"
    payment.Line = []
    for txn_id, amount in ((saved.Id, 240.0), ("134", 180.0)):  # 134 is INV-1058, customer 10's open $180.00
        applied = PaymentLine()
        applied.Amount = amount
        applied.LinkedTxn = [{"TxnId": txn_id, "TxnType": "Invoice"}]
        payment.Line.append(applied)
    booked = payment.save(qb=qbo)
    assert (booked.TotalAmt, booked.UnappliedAmt, len(booked.Line)) == (420.0, 0, 2)
    assert [Invoice.get(i, qb=qbo).Balance for i in (saved.Id, "134")] == [0, 0]

    too_long = Payment()
    too_long.CustomerRef = Ref()
    too_long.CustomerRef.value = "10"
    too_long.TotalAmt = 1.0
    too_long.PaymentRefNum = "ch_3PqRsTuVwXyZ0123456789ab"  # a real Stripe charge id: 27 characters
    with pytest.raises(QuickbooksException, match="Max:21"):
        too_long.save(qb=qbo)


def test_xero_python_puts_a_payment_and_a_numbered_invoice_in_another_currency(sandbox, xero):
    from xero_python.accounting.models import (
        Account,
        Contact,
        CurrencyCode,
        Invoice,
        Invoices,
        LineItem,
        Payment,
        Payments,
    )

    contact_id = sandbox.emulator("xero").dump("contacts")[0]["ContactID"]
    invoice = Invoice(type="ACCREC", contact=Contact(contact_id=contact_id), status="AUTHORISED",
                      invoice_number="INV-0042", currency_code=CurrencyCode.GBP,
                      line_items=[LineItem(description="Consulting", quantity=1.0, unit_amount=190.0)])
    created = xero.create_invoices(TENANT, Invoices(invoices=[invoice])).invoices[0]
    assert (created.invoice_number, _enum(created.currency_code), created.amount_due) == ("INV-0042", "GBP", 190.0)
    payment = Payment(invoice=Invoice(invoice_id=created.invoice_id), account=Account(code="090"), amount=90.0,
                      reference="ch_3PqRsTuVwXyZ0123456789ab")
    paid = xero.create_payments(TENANT, Payments(payments=[payment])).payments[0]
    assert (paid.amount, paid.reference) == (90.0, "ch_3PqRsTuVwXyZ0123456789ab")
    assert xero.get_invoice(TENANT, created.invoice_id).invoices[0].amount_due == 100.0


def test_a_lenient_plant_skips_what_a_vendor_refuses_and_records_only_what_was_planted(messy, sandbox):
    sandbox.set_faults("hubspot", error_rate=1.0)  # the CRM is down: its two kinds cannot be planted
    planted = messy.plant_before(strict=False)
    kinds = [r["kind"] for r in planted]
    assert kinds == [k for k in BEFORE_KINDS if k not in ("crm_delete", "crm_merge")]
    assert messy.anomalies()["planted"] == planted


def test_when_no_untouched_invoice_is_left_one_is_issued(messy, qbo):
    for _ in range(10):  # the ten open US invoices of Stripe-paying customers, one each
        messy.installments()
    record = messy.installments()
    # the eleventh has none left: a $300.00 invoice is issued to the first US customer paying through Stripe
    assert record["created_invoices"] == [record["invoice_number"]] and record["invoice_total"] == 30000
    assert _qbo_invoice(qbo, record["invoice_id"]).TotalAmt == 300.0


def test_a_hand_booking_after_the_invoice_is_settled_stays_an_unapplied_credit(messy, qbo):
    paid = messy.hand_booking("quickbooks", paid_before=0)  # INV-1058 settled by one $180.00 card payment
    assert (paid["invoice_number"], paid["amount"], paid["applied"], paid["balance_after"]) == (
        "INV-1058", 18000, 18000, 0)
    again = messy.hand_booking("quickbooks", invoice_number="INV-1058", charge_id=paid["charge_id"],
                               with_charge_id=False)
    assert (again["paid_before"], again["amount"], again["applied"], again["unapplied"], again["balance_after"]) == (
        0, 18000, 0, 18000, 0)
    payment = _qbo_payment(qbo, again["payment_id"])
    assert (payment.TotalAmt, payment.UnappliedAmt, payment.Line) == (180.0, 180.0, [])
    assert "ch_" not in (payment.PrivateNote or "") and not payment.PaymentRefNum

    settled = messy.hand_booking("xero", paid_before=0)
    with pytest.raises(MessyError, match="Xero refuses"):
        messy.hand_booking("xero", invoice_number=settled["invoice_number"], charge_id=settled["charge_id"])
