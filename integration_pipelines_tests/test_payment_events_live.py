"""S6, S8 and S11 through a running Dagster, as a business meets them: a customer pays an open invoice by card;
Stripe's signed `charge.succeeded` reaches the receiver, the event lane lands it, rebuilds core and runs the syncs it
reaches, and the outcome is read back through each target's own API while web-form leads keep arriving:
- S6: the QuickBooks invoice is paid (QuickBooks query API: balance 0, one payment of the amount); a second
  customer's GBP payment of an invoice whose number the US books use too is booked in Xero, the UK company's books
  (Xero Invoices API), and the US books' invoice of that number stays open;
- S8: one draft fulfilment order for the customer in Odoo (Odoo's JSON-RPC `search_read` on `client_order_ref`);
- S11: one receipt email to the customer (Postmark's outbound messages API).
Stripe then retries the same delivery: nothing happens twice. QuickBooks then notifies the change to its invoice
(the webhook it sends when our payment is applied): the lane re-reads the invoices, core's receivables drop, and
S14's published dataset (`reporting/published`) is written again by the automation sensor, with the US company's
open receivables exactly USD 645.00 lower. Nothing here is timed: the bounds are on hangs only.

World facts (seed 7, anchored 2026-03-10): Linus Hamilton, linus.hamilton35@aperture11.example.com, is Stripe
customer cus_TLlZxbzRLv2vQc (created 2026-03-09) and Odoo contact 54, and owes QuickBooks invoice INV-1037 for
USD 645.00, open in full. Tim Turing, tim.turing26@initech2.example.com, Stripe customer cus_SbZ9gPgdhQIB7U
(created 2026-03-07), owes the UK company Xero invoice INV-1039 (a9ab7e7a-4a24-4473-81f5-ab70741b19cb) for
GBP 319.50, AUTHORISED and open in full; QuickBooks also holds an open GBP 319.50 invoice numbered INV-1039 (the
numbers collide across the group's books). The syncs start now (IP_SYNC_START), so the world's earlier payments
send nothing.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from integration_pipelines.assets.core import CORE_TABLES
from integration_pipelines.connectors.mailer import SYSTEM as MAILER
from integration_pipelines.connectors.odoo import SYSTEM as ODOO
from integration_pipelines.connectors.quickbooks import SYSTEM as QBO
from integration_pipelines.sandbox import quickbooks as qbo_sandbox
from integration_pipelines.sandbox.hubspot import SANDBOX_TOKEN
from integration_pipelines.sandbox.server import SandboxServer
from integration_pipelines.webhooks.config import WebhookSecrets, WebhookSettings
from integration_pipelines.webhooks.probe import LeadProbe, Traffic
from integration_pipelines.webhooks.simulator import Signer

from .conftest import PARTITIONS
from .test_event_lane_live import GENEROUS, running_stack, wait_until
from .test_won_deals_routed_by_entity import _token, xero_invoice

pytest_plugins = ["integration_pipelines_tests.dagster_dev"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500),  # a bound on a hang of a whole dagster dev, not speed
              pytest.mark.xdist_group("stack")]  # meant to share one worker: see the Makefile

PAYER = "cus_TLlZxbzRLv2vQc"
PAYER_EMAIL = "linus.hamilton35@aperture11.example.com"
PAYER_IN_ODOO = 54
INVOICE = "INV-1037"
UK_PAYER = "cus_SbZ9gPgdhQIB7U"
UK_INVOICE, UK_INVOICE_ID = "INV-1039", "a9ab7e7a-4a24-4473-81f5-ab70741b19cb"


def qbo_query(url: str, query: str) -> dict:
    """One QuickBooks query through the query API, with a token from the OAuth refresh grant."""
    realm = QBO.values["realm_id"].sandbox
    headers = {"Accept": "application/json", "Authorization": f"Bearer {_token(url, QBO, qbo_sandbox.TOKEN_PATH)}"}
    answer = httpx.get(f"{url}/v3/company/{realm}/query", headers=headers,
                       params={"query": query, "minorversion": "75"}, timeout=30)
    answer.raise_for_status()
    return answer.json()["QueryResponse"]


def odoo_orders(url: str, reference: str) -> list[dict]:
    """Odoo sales orders whose Customer Reference is `reference`, through JSON-RPC as any Odoo client reads them."""
    def call(service: str, method: str, args: list) -> object:
        answer = httpx.post(f"{url}/jsonrpc", json={"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
            "service": service, "method": method, "args": args}}, timeout=30)
        answer.raise_for_status()
        return answer.json()["result"]

    db, login, key = (ODOO.values[name].sandbox for name in ("db", "login", "api_key"))
    uid = call("common", "authenticate", [db, login, key, {}])
    return call("object", "execute_kw", [db, uid, key, "sale.order", "search_read",  # type: ignore[return-value]
                                         [[["client_order_ref", "=", reference]]],
                                         {"fields": ["partner_id", "state", "note", "client_order_ref"]}])


def receipts_to(url: str, email: str) -> list[dict]:
    """Messages sent to `email`, through Postmark's outbound messages API."""
    answer = httpx.get(f"{url}/messages/outbound", params={"count": 500, "offset": 0, "recipient": email},
                       headers={"Accept": "application/json",
                                "X-Postmark-Server-Token": MAILER.values["server_token"].sandbox}, timeout=30)
    answer.raise_for_status()
    return [m for m in answer.json()["Messages"] if email in json.dumps(m.get("To"))]


def test_a_card_payment_reaches_the_books_the_warehouse_team_and_the_customer(
        tmp_path: Path, sandbox, sandbox_server: SandboxServer):
    url = sandbox_server.url
    stripe = sandbox.emulator("stripe")
    switched_on = datetime.fromtimestamp(stripe.now(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    [invoice] = qbo_query(url, f"SELECT * FROM Invoice WHERE DocNumber = '{INVOICE}'")["Invoice"]
    assert (float(invoice["TotalAmt"]), float(invoice["Balance"])) == (645.0, 645.0)
    assert (xero_invoice(url, UK_INVOICE_ID)["InvoiceNumber"], xero_invoice(url, UK_INVOICE_ID)["AmountDue"]) == (
        UK_INVOICE, 319.5)
    with running_stack(tmp_path, sandbox_server, "stripe,quickbooks,xero,odoo,mailer,hubspot",
                       IP_SYNC_START=switched_on) as (ui, receiver_url):
        # what the business had before switching the event path on: customers, open invoices, contacts, core
        first = ui.launch_run("__ASSET_JOB", assets=[
            ["stripe", "customers"], ["quickbooks", "customers"], ["quickbooks", "invoices"], ["xero", "contacts"],
            ["xero", "invoices"], ["odoo", "partners"],
            ["odoo", "sale_orders"], ["hubspot", "contacts"], *[["core", t] for t in CORE_TABLES]],
            tags={"dagster/asset_partition_range_start": PARTITIONS[0],
                  "dagster/asset_partition_range_end": PARTITIONS[-1]},
            run_config={"execution": {"config": {"in_process": {}}}})
        assert ui.wait_run(first, timeout=GENEROUS) == "SUCCESS", [
            e for e in ui.events(first) if e.get("level") == "ERROR" or e.get("error")][:3]

        summary = tmp_path / "data" / "published" / datetime.now(UTC).date().isoformat() / "summary.json"

        def published_at() -> datetime | None:
            return datetime.fromisoformat(json.loads(summary.read_text())["generated_at"]) if summary.exists() \
                else None

        def us_open() -> int:
            return next(e["open_receivables_usd_minor"] for e in json.loads(summary.read_text())["legal_entities"]
                        if e["legal_entity"] == "Acme Trading Inc (US)")

        # the automation sensor publishes once after the run above changed core; the lane's changes must do it again
        wait_until(lambda: published_at() is not None, "reporting/published written after the first core build")
        first_publication, us_open_before = published_at(), us_open()
        probe = LeadProbe(receiver_url, url, SANDBOX_TOKEN, uuid.uuid4().hex[:8])
        traffic = Traffic(probe, rate=2.0)
        traffic.start()
        try:
            wait_until(lambda: len(probe.sent) >= 5, "5 leads posted")
            signer = Signer(WebhookSecrets(), WebhookSettings(public_url=receiver_url))

            def pay(customer: str, amount: int, currency: str, number: str) -> tuple[dict, object]:
                """The customer pays by card; Stripe sends the charge.succeeded it records, signed."""
                charge = stripe.new_charge(amount, currency, stripe.objects["customers"][customer],
                                           description=f"Invoice {number}", metadata={"accounting_invoice": number})
                event = next(e for e in stripe.events() if e["type"] == "charge.succeeded"
                             and e["data"]["object"]["id"] == charge["id"])
                delivery = signer.sign("stripe", json.dumps({**event, "pending_webhooks": 1}).encode())
                answer = httpx.post(receiver_url + delivery.path, content=delivery.body, headers=delivery.headers,
                                    timeout=30)
                assert answer.status_code == 200, answer.text
                return charge, delivery

            charge, delivery = pay(PAYER, 64500, "usd", INVOICE)
            uk_charge, _ = pay(UK_PAYER, 31950, "gbp", UK_INVOICE)
            sent_before = len(probe.sent)
            reference = f"stripe:{charge['id']}"

            def invoice_paid() -> bool:
                return float(qbo_query(url, f"SELECT * FROM Invoice WHERE DocNumber = '{INVOICE}'")["Invoice"][0][
                    "Balance"]) == 0

            wait_until(invoice_paid, f"QuickBooks invoice {INVOICE} paid")
            wait_until(lambda: xero_invoice(url, UK_INVOICE_ID)["AmountDue"] == 0, f"Xero invoice {UK_INVOICE} paid")
            wait_until(lambda: len(odoo_orders(url, reference)) == 1, f"an Odoo order for {reference}")
            wait_until(lambda: len(receipts_to(url, PAYER_EMAIL)) == 1, f"a receipt to {PAYER_EMAIL}")
            assert traffic.is_alive() and len(probe.sent) > sent_before, "leads kept arriving meanwhile"

            # Stripe did not hear our 200 and delivers the same event again; later leads show the lane moved on
            again = httpx.post(receiver_url + delivery.path, content=delivery.body, headers=delivery.headers,
                               timeout=30)
            assert again.status_code == 200, again.text
            after_retry = len(probe.sent)
            wait_until(lambda: len(probe.sent) >= after_retry + 3, "3 more leads posted")
        finally:
            traffic.stop()
        assert traffic.errors == [] and all(s.status == 200 for s in probe.sent), traffic.errors[:3]
        with httpx.Client(timeout=30) as client:
            def all_leads_in_hubspot() -> bool:
                probe.look(client)
                return not probe.pending()

            wait_until(all_leads_in_hubspot, f"all {len(probe.sent)} leads in HubSpot")

        # QuickBooks says the invoice changed (our payment was applied to it); the lane reads the invoices again
        notice = {"eventNotifications": [{"realmId": QBO.values["realm_id"].sandbox, "dataChangeEvent": {
            "entities": [{"name": "Invoice", "id": invoice["Id"], "operation": "Update",
                          "lastUpdated": datetime.now(UTC).isoformat()}]}}]}
        told = signer.sign("quickbooks", json.dumps(notice).encode())
        answer = httpx.post(receiver_url + told.path, content=told.body, headers=told.headers, timeout=30)
        assert answer.status_code == 200, answer.text

        def republished_without_the_paid_invoice() -> bool:
            return published_at() != first_publication and us_open() == us_open_before - 64500

        # a bound on a hang: the automation's run queues behind the runs it started for the leads' batches, each a
        # process per step (stop 28's CI rehearsal took over 480 s here on the 2-core machine; 6.4 min for the whole
        # test alone on this one): issue 16's limit under continuous traffic, not a hang
        wait_until(republished_without_the_paid_invoice,
                   "reporting/published written again with the US company's receivables 645.00 lower",
                   timeout=4 * GENEROUS)

        payments = [p for p in qbo_query(url, "SELECT * FROM Payment MAXRESULTS 1000").get("Payment", [])
                    if charge["id"] in (p.get("PrivateNote") or "")]
        assert [(float(p["TotalAmt"]), p["CustomerRef"]["value"]) for p in payments] == [
            (645.0, invoice["CustomerRef"]["value"])]
        assert [line["LinkedTxn"][0]["TxnId"] for line in payments[0]["Line"]] == [invoice["Id"]]
        # the GBP payment is in the UK company's books only: its number's twin in the US books stays open
        uk = xero_invoice(url, UK_INVOICE_ID)
        assert (uk["Status"], [p["Amount"] for p in uk["Payments"]]) == ("PAID", [319.5])
        [us_twin] = [i for i in qbo_query(url, f"SELECT * FROM Invoice WHERE DocNumber = '{UK_INVOICE}'")["Invoice"]]
        assert (us_twin["CurrencyRef"]["value"], float(us_twin["Balance"])) == ("GBP", 319.5)
        assert not [p for p in qbo_query(url, "SELECT * FROM Payment MAXRESULTS 1000").get("Payment", [])
                    if uk_charge["id"] in (p.get("PrivateNote") or "")]
        [order] = odoo_orders(url, reference)
        assert (order["partner_id"][0], order["state"]) == (PAYER_IN_ODOO, "draft")
        assert "645.00 USD" in order["note"] and INVOICE in order["note"]
        [receipt] = receipts_to(url, PAYER_EMAIL)
        assert "645.00" in json.dumps(receipt)
        lanes = ui.runs(job="event_lane")
        assert lanes and all(r["status"] in ("STARTED", "SUCCESS") for r in lanes), lanes
