"""Messy webhook deliveries through the real receiver, the sensor and the ingest job: Stripe events delivered late,
out of order, twice, and replayed under a new event id. A customer's email is changed through Stripe's API a
minute apart each time (the emulator's clock moves on); whatever the delivery order, the warehouse ends with the
email of the last change, written out by hand below.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from integration_pipelines.sandbox.app import Sandbox
from integration_pipelines.sandbox.messy import MessyWorld
from integration_pipelines.sandbox.server import SandboxServer
from integration_pipelines.settings import Settings
from integration_pipelines.webhooks.config import WebhookSettings
from integration_pipelines.webhooks.definitions import build_webhook_definitions
from integration_pipelines.webhooks.server import ReceiverServer
from integration_pipelines.webhooks.testing import drain_event_lane, make_receiver, scrubbed_environment_names


class Stack:
    """A receiver on loopback, and the sensor and ingest job of an in-process Dagster instance."""

    def __init__(self, root: Path, sandbox: Sandbox, planter: MessyWorld) -> None:
        self.sandbox, self.messy = sandbox, planter
        self.settings = Settings(data_dir=root, warehouse=str(root / "warehouse.duckdb"))
        self.defs = build_webhook_definitions(self.settings, config=WebhookSettings(store_dir=root))
        self.instance = dg.DagsterInstance.ephemeral()

    def change_email(self, customer_id: str, emails: list[str]) -> list[dict]:
        """Each email set through Stripe's API a minute after the previous one; their events, oldest first."""
        stripe = self.sandbox.emulator("stripe")
        for email in emails:
            stripe.advance_clock(60)
            self.messy._stripe("POST", f"/v1/customers/{customer_id}", {"email": email})
        return self.messy.stripe_events(customer_id, ["customer.updated"])[-len(emails):]

    def ingest(self) -> None:
        drain_event_lane(self.defs, self.instance)

    def email(self, customer_id: str) -> list[tuple[str]]:
        with duckdb.connect(self.settings.warehouse_database, read_only=True) as con:
            return con.execute("SELECT email FROM raw_stripe.customers WHERE _pk = ?", [customer_id]).fetchall()


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox,
          sandbox_server: SandboxServer) -> Iterator[tuple[Stack, str]]:
    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    receiver, _, _ = make_receiver(tmp_path / "data")
    with MessyWorld(sandbox_server.url) as planter, ReceiverServer(receiver) as server:
        yield Stack(tmp_path / "data", sandbox, planter), server.url


def _customer(sandbox: Sandbox) -> str:
    return min(sandbox.emulator("stripe").dump("customers"), key=lambda c: (c["created"], c["id"]))["id"]


def test_a_late_delivery_does_not_undo_the_newer_change(stack, sandbox):
    s, url = stack
    customer = _customer(sandbox)
    events = s.change_email(customer, ["first@example.test", "second@example.test"])
    record = s.messy.webhook_late(url, events=events)  # the second change arrives, then the first
    assert [d["status"] for d in record["deliveries"]] == [200, 200]
    s.ingest()
    assert s.email(customer) == [("second@example.test",)]


def test_out_of_order_deliveries_end_at_the_last_change(stack, sandbox):
    s, url = stack
    customer = _customer(sandbox)
    events = s.change_email(customer, ["a@example.test", "b@example.test", "c@example.test"])
    s.messy.webhook_out_of_order(url, events=events)
    s.ingest()
    assert s.email(customer) == [("c@example.test",)]


def test_a_delivery_twice_and_a_replay_under_a_new_id_after_a_newer_change_change_nothing(stack, sandbox):
    s, url = stack
    customer = _customer(sandbox)
    old, new = s.change_email(customer, ["old@example.test", "new@example.test"])
    s.messy.webhook_twice(url, event=new)
    s.ingest()
    s.messy.webhook_replayed(url, event=old)  # a captured older delivery re-sent under a new event id
    s.ingest()
    assert s.email(customer) == [("new@example.test",)]
    with duckdb.connect(s.settings.warehouse_database, read_only=True) as con:
        # every distinct delivery is on record; the duplicate of the same id landed once
        assert con.execute("SELECT count(*) FROM raw_webhooks.events").fetchone() == (3,)
