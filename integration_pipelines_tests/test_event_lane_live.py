"""S1 and S12 through a running Dagster, as a business meets them: web-form leads posted to the receiver keep arriving
while we check that every one of them is in HubSpot, read back through HubSpot's own search API. Nothing here
is timed: the point is that the event path never starves under continuous traffic (it did: an automation
condition waited for an ingest run that was always in flight) and that each lead is one contact."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from integration_pipelines.assets.core import CORE_TABLES
from integration_pipelines.sandbox.hubspot import SANDBOX_TOKEN
from integration_pipelines.sandbox.odoo import _now as odoo_now
from integration_pipelines.sandbox.server import SandboxServer
from integration_pipelines.sandbox.shopify import API_ROOT as SHOPIFY_API
from integration_pipelines.sandbox.shopify import SANDBOX_ACCESS_TOKEN as SHOPIFY_TOKEN
from integration_pipelines.webhooks.config import WebhookSecrets
from integration_pipelines.webhooks.probe import LeadProbe, Traffic

from .dagster_dev import CLI, DagsterDev, Processes, free_port, stack_environment, start_dagster_dev, wait_http

pytest_plugins = ["integration_pipelines_tests.dagster_dev"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900),  # a bound on a hang of a whole dagster dev, not a speed claim
              pytest.mark.xdist_group("stack")]  # meant to share one worker: see the Makefile

GENEROUS = 240.0  # seconds: a bound on a hung pipeline on a loaded 2-core machine, not a latency claim


def wait_until(condition: Callable[[], bool], what: str, timeout: float = GENEROUS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.5)


@contextlib.contextmanager
def running_stack(root: Path, sandbox_server: SandboxServer, systems: str,
                  **settings: str) -> Iterator[tuple[DagsterDev, str]]:
    """`dagster dev` and the webhook receiver for `systems`, on the session's sandbox; stopped afterwards.
    `settings` are more environment variables for every process (they win over the defaults)."""
    receiver_port = free_port()
    env = stack_environment(root, sandbox_server.url, receiver_port, **{
        "IP_ENABLED_SYSTEMS": systems, "IP_SYNC_START": "2026-01-01", **settings})
    processes = Processes(root / "logs")
    try:
        receiver = processes.spawn("receiver", [*CLI, "webhooks", "serve", "--port", str(receiver_port)], env, root)
        ui = start_dagster_dev(processes, env, root)
        receiver_url = f"http://127.0.0.1:{receiver_port}"
        wait_http(f"{receiver_url}/healthz", receiver, "the webhook receiver", processes.log_dir / "receiver.log")
        yield ui, receiver_url
    finally:
        processes.stop()


def test_every_lead_reaches_hubspot_once_while_leads_keep_arriving(tmp_path: Path, sandbox_server: SandboxServer):
    with running_stack(tmp_path, sandbox_server, "hubspot") as (ui, receiver_url):
        # the CRM's contacts, read once: a form post only fills what a known contact leaves empty
        first = ui.launch_run("__ASSET_JOB", assets=[["hubspot", "contacts"]])
        assert ui.wait_run(first, timeout=GENEROUS) == "SUCCESS", [
            e for e in ui.events(first) if e.get("level") == "ERROR" or e.get("error")][:3]
        probe = LeadProbe(receiver_url, sandbox_server.url, SANDBOX_TOKEN, uuid.uuid4().hex[:8])
        traffic = Traffic(probe, rate=4.0)
        traffic.start()
        with httpx.Client(timeout=30) as client:
            wait_until(lambda: len(probe.sent) >= 20, "20 leads posted")
            first_wave = probe.sent[:20]

            def first_wave_in_hubspot() -> bool:
                probe.look(client)
                return all(s.found_at is not None for s in first_wave)

            wait_until(first_wave_in_hubspot, "the first 20 leads in HubSpot while more keep arriving")
            assert traffic.is_alive() and len(probe.sent) > 20, "leads were still arriving while we checked"
            traffic.stop()
            assert traffic.errors == [] and all(s.status == 200 for s in probe.sent), traffic.errors[:3]

            def all_in_hubspot() -> bool:
                probe.look(client)
                return not probe.pending()

            wait_until(all_in_hubspot, f"all {len(probe.sent)} leads in HubSpot")
            # exactly once: one contact per lead, however many batches, syncs and runs touched it
            counts = probe.contacts_per_email(client)
            assert set(counts.values()) == {1}, {e: n for e, n in counts.items() if n != 1}
        lanes = ui.runs(job="event_lane")
        assert lanes and all(r["status"] in ("STARTED", "SUCCESS") for r in lanes), lanes
        assert ui.runs(job="webhook_ingest") == []


def test_a_stock_change_in_the_erp_reaches_shopify_from_its_webhook(tmp_path: Path, sandbox_server: SandboxServer):
    """S12: Odoo tells us "stock.quant changed" (an automated action's webhook, no quantity in it); the lane
    reads Odoo's products through the read spec, rebuilds core and pushes the new on-hand count to Shopify,
    read back through Shopify's inventory API."""
    sandbox = sandbox_server.sandbox
    with running_stack(tmp_path, sandbox_server, "odoo,shopify") as (ui, receiver_url):
        # what the business had before switching the event path on: the stock streams and core, read once
        first = ui.launch_run("__ASSET_JOB", assets=[["odoo", "products"], ["shopify", "products"],
                                                     ["shopify", "inventory_levels"],
                                                     *[["core", t] for t in CORE_TABLES]])
        assert ui.wait_run(first, timeout=GENEROUS) == "SUCCESS", [
            e for e in ui.events(first) if e.get("level") == "ERROR" or e.get("error")][:3]
        shopify = sandbox.emulator("shopify")
        item_of = {v["sku"]: v["inventory_item_id"] for p in shopify.dump("products") for v in p["variants"]}
        odoo = sandbox.emulator("odoo")
        sku = next(p["default_code"] for p in odoo.dump("products") if p["default_code"] in item_of)
        with odoo.sandbox.lock:  # a stock count in the ERP, as Odoo's inventory mode records it
            pid = next(p["id"] for p in odoo.records["product.product"].values() if p["default_code"] == sku)
            odoo._set_quant(pid, 4242.0, odoo_now())
        token = WebhookSecrets().primary("odoo_webhook_token")
        answer = httpx.post(f"{receiver_url}/webhooks/odoo/{token}",
                            json={"_model": "stock.quant", "_id": pid, "_action": "write"})
        assert answer.status_code == 200, answer.text

        def shopify_shows_it() -> bool:
            levels = httpx.get(f"{sandbox_server.url}{SHOPIFY_API}/inventory_levels.json",
                               params={"inventory_item_ids": str(item_of[sku])},
                               headers={"x-shopify-access-token": SHOPIFY_TOKEN}).json()["inventory_levels"]
            return bool(levels) and all(level["available"] == 4242 for level in levels)

        wait_until(shopify_shows_it, f"Shopify's stock of {sku} set to the ERP's 4242")
