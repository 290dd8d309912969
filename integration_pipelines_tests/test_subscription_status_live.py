"""S9 through a running Dagster, as a business meets it: Stripe tells us a subscription changed
(`customer.subscription.updated`, signed with the sandbox's webhook secret), the receiver lands it, the event lane
applies it, rebuilds core and runs the syncs it reaches, and the customer's HubSpot contact shows the new status,
read back through HubSpot's own API, while other events (web-form leads) keep arriving. Nothing here is timed: the
bounds are on hangs only.

World facts (sandbox/world.py `_subscribe`, seed 7, anchored 2026-03-10): ken.allen18@initech6.example.com holds an
active Stripe subscription to Basic monthly; here its renewal payment fails, as Stripe records it (past_due).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from integration_pipelines.assets.core import CORE_TABLES
from integration_pipelines.sandbox.hubspot import SANDBOX_TOKEN
from integration_pipelines.sandbox.server import SandboxServer
from integration_pipelines.webhooks.config import WebhookSecrets, WebhookSettings
from integration_pipelines.webhooks.probe import LeadProbe, Traffic
from integration_pipelines.webhooks.simulator import Signer

from .conftest import PARTITIONS
from .test_event_lane_live import GENEROUS, running_stack, wait_until

pytest_plugins = ["integration_pipelines_tests.dagster_dev"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),  # a bound on a hang of a whole dagster dev, not a speed claim
              pytest.mark.xdist_group("stack")]  # meant to share one worker: see the Makefile

SUBSCRIBER = "ken.allen18@initech6.example.com"
SYNC = "subscription_status_to_hubspot"


def contact_properties(sandbox_url: str, email: str) -> list[dict]:
    """The subscriber's HubSpot contact(s), through HubSpot's search API."""
    answer = httpx.post(f"{sandbox_url}/crm/v3/objects/contacts/search", headers={
        "Authorization": f"Bearer {SANDBOX_TOKEN}"}, json={
        "filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]}],
        "properties": ["email", "subscription_status", "subscription_plan", "subscription_renews_on"]}, timeout=30)
    answer.raise_for_status()
    return [r["properties"] for r in answer.json()["results"]]


def test_a_subscription_webhook_reaches_the_hubspot_contact_while_other_events_keep_arriving(
        tmp_path: Path, sandbox, sandbox_server: SandboxServer):
    stripe = sandbox.emulator("stripe")
    customer = next(c["id"] for c in stripe.dump("customers") if c["email"] == SUBSCRIBER)
    [subscription] = [s["id"] for s in stripe.dump("subscriptions") if s["customer"] == customer]
    with running_stack(tmp_path, sandbox_server, "stripe,hubspot") as (ui, receiver_url):
        # what the business had before switching the event path on: Stripe's days and the CRM read, core and the sync
        first = ui.launch_run("__ASSET_JOB", assets=[
            ["stripe", "customers"], ["stripe", "subscriptions"], ["hubspot", "contacts"],
            *[["core", t] for t in CORE_TABLES], ["sync", SYNC]],
            tags={"dagster/asset_partition_range_start": PARTITIONS[0],
                  "dagster/asset_partition_range_end": PARTITIONS[-1]},
            run_config={"execution": {"config": {"in_process": {}}}})  # one process for the five steps
        assert ui.wait_run(first, timeout=GENEROUS) == "SUCCESS", [
            e for e in ui.events(first) if e.get("level") == "ERROR" or e.get("error")][:3]
        shown = contact_properties(sandbox_server.url, SUBSCRIBER)
        assert shown and {p["subscription_status"] for p in shown} == {"active"}
        assert {(p["subscription_plan"], p["subscription_renews_on"]) for p in shown} == {("Basic monthly",
                                                                                          "2026-04-09")}

        probe = LeadProbe(receiver_url, sandbox_server.url, SANDBOX_TOKEN, uuid.uuid4().hex[:8])
        traffic = Traffic(probe, rate=2.0)
        traffic.start()
        try:
            wait_until(lambda: len(probe.sent) >= 5, "5 leads posted")
            # the renewal payment fails at Stripe; Stripe sends the event it records, signed
            stripe.set_subscription_status(subscription, "past_due")
            event = next(e for e in stripe.events() if e["type"] == "customer.subscription.updated"
                         and e["data"]["object"]["id"] == subscription)
            assert event["data"]["previous_attributes"] == {"status": "active"}
            signer = Signer(WebhookSecrets(), WebhookSettings(public_url=receiver_url))
            delivery = signer.sign("stripe", json.dumps({**event, "pending_webhooks": 1}).encode())
            answer = httpx.post(receiver_url + delivery.path, content=delivery.body, headers=delivery.headers,
                                timeout=30)
            assert answer.status_code == 200, answer.text
            sent_before = len(probe.sent)

            def hubspot_shows_past_due() -> bool:
                return {p["subscription_status"] for p in contact_properties(sandbox_server.url, SUBSCRIBER)} == {
                    "past_due"}

            wait_until(hubspot_shows_past_due, f"{SUBSCRIBER}'s HubSpot contact says past_due")
            assert traffic.is_alive() and len(probe.sent) > sent_before, "leads kept arriving meanwhile"
        finally:
            traffic.stop()
        assert traffic.errors == [] and all(s.status == 200 for s in probe.sent), traffic.errors[:3]
        shown = contact_properties(sandbox_server.url, SUBSCRIBER)
        assert {(p["subscription_plan"], p["subscription_renews_on"]) for p in shown} == {("Basic monthly",
                                                                                          "2026-04-09")}
        lanes = ui.runs(job="event_lane")
        assert lanes and all(r["status"] in ("STARTED", "SUCCESS") for r in lanes), lanes
