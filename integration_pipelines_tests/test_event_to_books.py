"""The event-driven path end to end: a customer pays an open invoice by card; Stripe's signed webhook is
verified and landed, the sensor's run puts the charge in DuckDB, core links it to the QuickBooks invoice,
and the payments sync records it in the books, exactly once."""

from __future__ import annotations

import json
import random
import socket

import httpx

from integration_pipelines.webhooks.config import load_webhook_secrets
from integration_pipelines.webhooks.server import ReceiverServer
from integration_pipelines.webhooks.simulator import Signer, Simulator, deliver
from integration_pipelines.webhooks.testing import make_receiver

from .conftest import warehouse_rows
from .test_core_models import build, extract
from .test_syncs import sync
from .test_webhooks_ingest import Env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_simulated_card_payment_reaches_duckdb_and_the_books(settings, sandbox, sandbox_server, monkeypatch):
    extract(settings)
    build(settings)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("IP_WEBHOOK_PUBLIC_URL", url)
    receiver, _, config = make_receiver(settings.data_dir, public_url=url)
    simulator = Simulator(sandbox_server.url, Signer(load_webhook_secrets(), config), random.Random(5))
    with ReceiverServer(receiver, port=port), httpx.Client() as client:
        delivery = simulator.payment_succeeded(client)
        assert deliver(client, url, delivery) == 200
        assert deliver(client, url, delivery) == 200  # the vendor retries: acknowledged, not landed twice
    charge = json.loads(delivery.body)["data"]["object"]
    invoice_number = charge["metadata"]["accounting_invoice"]

    assert Env(settings.data_dir).drain() == 1
    assert warehouse_rows(settings, "SELECT count(*) FROM raw_stripe.charges WHERE _pk = ?", [charge["id"]]) == [(1,)]
    build(settings)
    status = warehouse_rows(settings, "SELECT invoice_status, invoice_system FROM core.payments WHERE source_id = ?",
                            [charge["id"]])
    assert status == [("matched", "quickbooks")]

    result = sync(settings, "payments_to_quickbooks")
    assert result.created == 1 and result.failed == 0
    books = sandbox.emulator("quickbooks")
    invoice = next(i for i in books.dump("invoices") if i["DocNumber"] == invoice_number)
    assert float(invoice["Balance"]) == 0
    applied = [p for p in books.dump("payments") if charge["id"] in p.get("PrivateNote", "")]
    assert len(applied) == 1
    assert sync(settings, "payments_to_quickbooks").created == 0
