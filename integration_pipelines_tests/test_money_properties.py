"""A property of the whole money path: whatever the order of card payments, hand bookings by a bookkeeper, sync
runs, webhooks delivered late or replayed, and QuickBooks applying a payment and then answering with an error,
QuickBooks ends up with exactly one payment per card payment, on the invoice the charge names, and the warehouse
holds each charge's newest state.

Hypothesis draws the interleavings (deterministic in CI: the `ci` profile in conftest.py). Each step talks to the
sandbox over HTTP as the actors would: customers pay through Stripe's API, the bookkeeper books through
QuickBooks' API after looking at the books, the pipeline reads Stripe's change feed and the books, and syncs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stripe
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from integration_pipelines.sandbox.app import Sandbox
from integration_pipelines.sandbox.messy import MessyWorld
from integration_pipelines.sandbox.server import SandboxServer
from integration_pipelines.sandbox.stripe import SANDBOX_API_KEY
from integration_pipelines.settings import Settings
from integration_pipelines.syncs.engine import run_sync
from integration_pipelines.syncs.registry import get_sync
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.webhooks.ingest import ingest_batch
from integration_pipelines.webhooks.landing import LocalLandingStore
from integration_pipelines.webhooks.receiver import envelope

from .conftest import materialize_stream, warehouse_rows
from .test_core_models import build

SYNC = "payments_to_quickbooks"
BOOKS_STREAMS = ("customers", "invoices", "payments")


class MoneyWorld(RuleBasedStateMachine):
    """The actors and the pipeline, with the facts a bookkeeper would write down as they happen."""

    server: SandboxServer
    base_settings: Settings
    root: Path

    def __init__(self) -> None:
        super().__init__()
        self.server.sandbox.reset()
        MoneyWorld.runs = getattr(MoneyWorld, "runs", 0) + 1
        data = self.root / f"example-{MoneyWorld.runs}"
        self.settings = self.base_settings.model_copy(update={"data_dir": data})
        self.warehouse = Warehouse(self.settings.warehouse_database)
        self.landing = LocalLandingStore(data / "webhooks")
        self.messy = MessyWorld(self.server.url)
        self.stripe = stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": self.server.url},
                                          max_network_retries=0)
        self.invoices = [i for i in self.messy.books_invoices("quickbooks") if i.balance == i.total
                         and i.currency == "USD" and i.country == "US" and i.stripe_customer_id
                         and i.balance >= 3000][:2]
        self.charges: list[dict[str, Any]] = []  # id, invoice, amount
        self.hand_booked: set[str] = set()
        self.events: list[dict[str, Any]] = []  # Stripe events captured for delivery, in order of creation
        self.sync_count = 0

    def teardown(self) -> None:
        try:
            self._final_checks()
        finally:
            self.server.sandbox.clear_faults()
            self.messy.close()

    # -- what the world does -------------------------------------------------------------------------
    @initialize()
    def read_the_books_once(self) -> None:
        self._read_and_build()

    @rule(invoice=st.integers(0, 1), cents=st.sampled_from([700, 1000, 1300]))
    def customer_pays_part_of_an_invoice_by_card(self, invoice: int, cents: int) -> None:
        target = self.invoices[invoice % len(self.invoices)]
        if sum(c["amount"] for c in self.charges if c["invoice"] == target.number) + cents > target.total:
            return
        charge = self.stripe.charges.create(params={
            "customer": target.stripe_customer_id, "amount": cents, "currency": "usd", "source": "tok_visa",
            "metadata": {"accounting_invoice": target.number}})
        self.charges.append({"id": charge.id, "invoice": target, "amount": cents})
        self.events += self.messy.stripe_events(charge.id)

    @precondition(lambda self: self.charges)
    @rule(which=st.integers(0, 20), with_charge_id=st.booleans())
    def bookkeeper_books_a_card_payment_by_hand(self, which: int, with_charge_id: bool) -> None:
        """A careful bookkeeper looks at the books first and only books a payment they do not see there."""
        charge = self.charges[which % len(self.charges)]
        if charge["id"] in self.hand_booked or self._books_mention(charge["id"]) or self._looks_booked(charge):
            return
        self.messy.hand_booking("quickbooks", invoice_number=charge["invoice"].number, charge_id=charge["id"],
                                with_charge_id=with_charge_id, paid_before=0, amount=charge["amount"])
        self.hand_booked.add(charge["id"])

    @precondition(lambda self: self.charges)
    @rule(which=st.integers(0, 20))
    def a_refund_is_made(self, which: int) -> None:
        charge = self.charges[which % len(self.charges)]
        current = self.stripe.charges.retrieve(charge["id"])
        if current.amount_refunded < current.amount:
            self.stripe.refunds.create(params={"charge": charge["id"], "amount": 100})
            self.events += self.messy.stripe_events(charge["id"])

    @precondition(lambda self: self.events)
    @rule(which=st.integers(0, 50), as_new_delivery=st.booleans())
    def an_old_webhook_arrives_late_or_replayed(self, which: int, as_new_delivery: bool) -> None:
        event = self.events[which % len(self.events)]
        delivery = f"{event['id']}-replay-{which}" if as_new_delivery else event["id"]
        received = datetime.now(UTC)
        self.landing.land("stripe", received.strftime("%Y-%m-%d"), delivery, envelope(
            "stripe", delivery, event["type"], received, {"content-type": "application/json"},
            json.dumps(event).encode()))
        batch = f"b{len(self.events)}-{which}"
        if self.landing.claim(batch, limit=100):
            ingest_batch(self.landing, self.warehouse, self.settings.spool_dir, batch, run_id=batch)

    @rule(fault=st.sampled_from(["none", "5xx", "drop"]))
    def the_pipeline_runs(self, fault: str) -> None:
        sandbox = self.server.sandbox
        if fault != "none":  # QuickBooks applies the payment, then the answer is lost
            sandbox.set_faults("quickbooks", apply_then_fail_rate=1.0, apply_then_fail_kind=fault, methods=["POST"],
                               seed=self.sync_count)
        try:
            self._read_and_build()
            run_sync(get_sync(SYNC), self.warehouse, self.settings, run_id=f"sync-{self.sync_count}")
        except Exception:  # a failed run is allowed; what it leaves behind is what the invariants judge
            pass
        finally:
            sandbox.clear_faults()
            self.sync_count += 1

    # -- what must hold ------------------------------------------------------------------------------
    @invariant()
    def no_card_payment_is_booked_twice(self) -> None:
        for charge in self.charges:
            booked = self._bookings_of(charge)
            assert len(booked) <= 1, f"{charge['id']} is booked {len(booked)} times: {booked}"

    def _final_checks(self) -> None:
        """After a last clean run, every card payment is in the books exactly once, on its invoice, and the
        warehouse holds each charge's refunds as Stripe has them."""
        self.the_pipeline_runs("none")
        self.the_pipeline_runs("none")  # a write whose answer was lost is settled by the run after it
        for charge in self.charges:
            booked = self._bookings_of(charge)
            assert len(booked) == 1, f"{charge['id']} is booked {len(booked)} times"
            linked = [link["TxnId"] for line in booked[0]["Line"] for link in line["LinkedTxn"]]
            assert linked == [charge["invoice"].invoice_id]
            refunded = self.stripe.charges.retrieve(charge["id"]).amount_refunded
            assert warehouse_rows(self.settings, "SELECT amount_refunded FROM raw_stripe.charges WHERE _pk = ?",
                                  [charge["id"]]) == [(refunded,)]

    # -- helpers ---------------------------------------------------------------------------------------
    def _read_and_build(self) -> None:
        materialize_stream(self.settings, "stripe", "events")
        for stream in BOOKS_STREAMS:
            materialize_stream(self.settings, "quickbooks", stream)
        build(self.settings)

    def _qbo_payments(self) -> list[dict[str, Any]]:
        return self.server.sandbox.emulator("quickbooks").dump("payments")

    def _books_mention(self, charge_id: str) -> bool:
        return any(charge_id in (p.get("PrivateNote", "") + p.get("PaymentRefNum", "")) for p in self._qbo_payments())

    def _looks_booked(self, charge: dict[str, Any]) -> bool:
        """A payment of that amount on that invoice that names no charge: the bookkeeper takes it for this one."""
        return any(round(float(p["TotalAmt"]) * 100) == charge["amount"] and "ch_" not in p.get("PrivateNote", "")
                   and any(link["TxnId"] == charge["invoice"].invoice_id for line in p["Line"]
                           for link in line["LinkedTxn"])
                   for p in self._qbo_payments() if p.get("PaymentRefNum") != "BANK-TRANSFER")

    def _bookings_of(self, charge: dict[str, Any]) -> list[dict[str, Any]]:
        """QuickBooks payments that record this charge: naming it, or (a hand booking without its id) the one
        booked by hand for it."""
        hand = {r["payment_id"] for r in self.messy.planted if r.get("charge_id") == charge["id"]}
        return [p for p in self._qbo_payments() if charge["id"] in p.get("PrivateNote", "") or p["Id"] in hand]


@pytest.mark.reliability
@pytest.mark.timeout(1200)  # 48 pipeline runs with lost answers and retries: a bound on a hang, not a speed claim
def test_any_interleaving_books_each_card_payment_exactly_once(settings_for_properties, sandbox_server, tmp_path):
    MoneyWorld.server = sandbox_server
    MoneyWorld.base_settings = settings_for_properties
    MoneyWorld.root = tmp_path
    machine = MoneyWorld.TestCase
    machine.settings = settings(max_examples=6, stateful_step_count=8, deadline=None,
                                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    machine().runTest()


@pytest.fixture
def settings_for_properties(settings: Settings, sandbox: Sandbox) -> Settings:
    return settings

