"""Webhook rows say where they came from (issue 15): an event the receiver verified with a sandbox secret loads as
sandbox rows, one verified with the operator's live secret as live rows of the account the system resolves to, and
a file landed before the receiver recorded the mode stays unknown. Events go through the real receiver over HTTP
(signed with Stripe's own library) and the ingest the event lane runs; the rows are read back from the warehouse.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import stripe

from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.webhooks.config import SANDBOX_SECRETS
from integration_pipelines.webhooks.ingest import ingest_batch
from integration_pipelines.webhooks.landing import LocalLandingStore
from integration_pipelines.webhooks.receiver import envelope
from integration_pipelines.webhooks.server import ReceiverServer
from integration_pipelines.webhooks.testing import make_receiver

from .conftest import warehouse_rows

# credentials, secrets and provenance (docs/security.md): part of the reliability suite, `pytest -m reliability`
pytestmark = pytest.mark.reliability

LIVE_WEBHOOK_SECRET = "whsec_obviously_fake_live_secret_for_tests"
LIVE_API_KEY = "sk_live_FAKE_key_for_tests_0001"


def charge_event(event_id: str, charge_id: str) -> bytes:
    return json.dumps({"id": event_id, "object": "event", "type": "charge.succeeded", "data": {"object": {
        "id": charge_id, "object": "charge", "amount": 500, "currency": "eur", "created": 1773100000}}}).encode()


def deliver(root: Path, secret: str, event_id: str, charge_id: str, **secrets: str) -> None:
    """One signed Stripe event through a real receiver over HTTP, landed under `root`."""
    receiver, _, _ = make_receiver(root, "http://127.0.0.1/", **secrets)
    body = charge_event(event_id, charge_id)
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
    with ReceiverServer(receiver) as server:
        response = httpx.post(f"{server.url}/webhooks/stripe", content=body, timeout=10,
                              headers={"stripe-signature": header, "content-type": "application/json"})
    assert response.status_code == 200, response.text


def ingest(root: Path, settings) -> None:  # type: ignore[no-untyped-def]
    store = LocalLandingStore(root)
    assert store.claim("batch-1", limit=100)
    result = ingest_batch(store, Warehouse(settings.warehouse_database), settings.spool_dir, "batch-1", "run-1")
    assert not result.failed, result.failed


def sources(settings, table: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    return warehouse_rows(settings, f"SELECT _pk, _source_mode, _source_account FROM {table} ORDER BY _pk")


def test_a_sandbox_verified_event_loads_sandbox_rows_of_the_sandbox_account(settings, sandbox_server, tmp_path):
    deliver(tmp_path / "hooks", SANDBOX_SECRETS["stripe_webhook_secret"], "evt_sbx_1", "ch_sbx_1")
    ingest(tmp_path / "hooks", settings)
    host = sandbox_server.url.removeprefix("http://")
    assert sources(settings, "raw_stripe.charges") == [("ch_sbx_1", "sandbox", host)]
    # the event's own row: sandbox too; the webhooks schema belongs to no system, so no account
    assert sources(settings, "raw_webhooks.events") == [("stripe/evt_sbx_1", "sandbox", None)]


def test_a_live_verified_event_loads_live_rows_of_the_live_account(settings, tmp_path,
                                                                    monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STRIPE_API_KEY", LIVE_API_KEY)  # Stripe is live: the receiver takes only the real secret
    deliver(tmp_path / "hooks", LIVE_WEBHOOK_SECRET, "evt_live_1", "ch_live_1",
            stripe_webhook_secret=LIVE_WEBHOOK_SECRET)
    ingest(tmp_path / "hooks", settings)
    assert sources(settings, "raw_stripe.charges") == [("ch_live_1", "live", "api.stripe.com")]
    assert sources(settings, "raw_webhooks.events") == [("stripe/evt_live_1", "live", None)]


def test_a_live_event_ingested_where_the_system_is_now_sandbox_keeps_live_and_no_account(settings, tmp_path,
                                                                                          monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", LIVE_API_KEY)
    deliver(tmp_path / "hooks", LIVE_WEBHOOK_SECRET, "evt_live_2", "ch_live_2",
            stripe_webhook_secret=LIVE_WEBHOOK_SECRET)
    monkeypatch.delenv("STRIPE_API_KEY")  # the lane runs with other settings than the receiver did
    ingest(tmp_path / "hooks", settings)
    assert sources(settings, "raw_stripe.charges") == [("ch_live_2", "live", None)]


def test_a_file_landed_before_the_mode_was_recorded_stays_unknown(settings, tmp_path):
    from datetime import UTC, datetime

    root = tmp_path / "hooks"
    received = datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert LocalLandingStore(root).land("stripe", "2026-03-10", "evt_old_1", envelope(
        "stripe", "evt_old_1", "charge.succeeded", received, {"content-type": "application/json"},
        charge_event("evt_old_1", "ch_old_1")))
    ingest(root, settings)
    assert sources(settings, "raw_stripe.charges") == [("ch_old_1", None, None)]
