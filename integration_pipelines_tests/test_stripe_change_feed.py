"""Changes to old records reach the warehouse with no webhook: Stripe lists charges by creation day only, so a
refund made ten days after the charge is read from the Events API (`stripe/events`) and applied by version.

Every change is made through Stripe's own API with the official SDK, as the business (or its bank) would; the
expected values are written out by hand from what was done.
"""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from integration_pipelines.sandbox.stripe import SANDBOX_API_KEY

from .conftest import PARTITIONS, materialize_stream, warehouse_rows
from .test_core_models import build


@pytest.fixture
def client(sandbox_server: Any) -> stripe.StripeClient:
    return stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": sandbox_server.url}, max_network_retries=0)


@pytest.fixture
def nightly_done(settings, sandbox):
    """The world's three days (in March) were read by the nightly partitions; it is now months later."""
    for partition in PARTITIONS:
        materialize_stream(settings, "stripe", "charges", partition)
    materialize_stream(settings, "stripe", "customers", PARTITIONS[0])
    materialize_stream(settings, "stripe", "events")
    return sandbox.emulator("stripe")


def _oldest_succeeded_charge(sandbox) -> dict:
    charges = [c for c in sandbox.emulator("stripe").dump("charges") if c["status"] == "succeeded"
               and not c["refunded"]]
    return min(charges, key=lambda c: (c["created"], c["id"]))


def test_a_refund_months_after_the_charge_reaches_the_warehouse_by_the_next_read_of_the_feed(
        settings, sandbox, client, nightly_done):
    charge = _oldest_succeeded_charge(sandbox)
    client.refunds.create(params={"charge": charge["id"], "amount": 500})
    client.refunds.create(params={"charge": charge["id"], "amount": 250})  # refunded twice, partly
    # the nightly for the day of the refund reads that day's new charges: the old charge is not among them
    result = materialize_stream(settings, "stripe", "events")
    assert result.success
    assert warehouse_rows(settings, "SELECT amount_refunded FROM raw_stripe.charges WHERE _pk = ?",
                          [charge["id"]]) == [(750,)]
    build(settings)
    assert warehouse_rows(settings, "SELECT refunded_minor FROM core.payments WHERE source_id = ?",
                          [charge["id"]]) == [(750,)]
    applied = result.asset_materializations_for_node("stripe__events")[0].metadata["applied_to"].value
    assert applied["raw_stripe.charges"]["updated"] == 1

    # a re-read of the feed changes nothing
    again = materialize_stream(settings, "stripe", "events")
    applied = again.asset_materializations_for_node("stripe__events")[0].metadata.get("applied_to")
    assert applied is None or all(t["updated"] == 0 and t["inserted"] == 0 for t in applied.value.values())
    assert warehouse_rows(settings, "SELECT count(*), count(DISTINCT _pk) FROM raw_stripe.charges")[0][0] == \
        len(sandbox.emulator("stripe").dump("charges"))


def test_a_dispute_and_a_customer_email_change_reach_the_warehouse_through_the_feed(
        settings, sandbox, client, nightly_done):
    charge = _oldest_succeeded_charge(sandbox)
    customer = min(sandbox.emulator("stripe").dump("customers"), key=lambda c: (c["created"], c["id"]))
    nightly_done.open_dispute(charge["id"], reason="fraudulent")
    client.customers.update(customer["id"], params={"email": "new.address@example.test"})
    materialize_stream(settings, "stripe", "events")
    assert warehouse_rows(settings, "SELECT charge, reason, status FROM raw_stripe.disputes") == [
        (charge["id"], "fraudulent", "needs_response")]
    assert warehouse_rows(settings, "SELECT email FROM raw_stripe.customers WHERE _pk = ?",
                          [customer["id"]]) == [("new.address@example.test",)]


def test_a_partition_re_read_after_the_feed_does_not_undo_the_refund_and_the_feed_does_not_undo_a_newer_read(
        settings, sandbox, client, nightly_done):
    charge = _oldest_succeeded_charge(sandbox)
    client.refunds.create(params={"charge": charge["id"]})  # the whole amount
    materialize_stream(settings, "stripe", "events")
    day = next(p for p in PARTITIONS if p == _day(charge["created"]))
    materialize_stream(settings, "stripe", "charges", day)  # a backfill of the charge's day: same refund
    materialize_stream(settings, "stripe", "events", full_refresh=True)  # every event again, older ones too
    assert warehouse_rows(settings, "SELECT amount_refunded, refunded FROM raw_stripe.charges WHERE _pk = ?",
                          [charge["id"]]) == [(charge["amount"], True)]


def _day(unix: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d")
