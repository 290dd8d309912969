"""S10, the warehouse side: a Stripe charge's fee comes from its balance transaction (stripe/balance_transactions)
into core.payments.fee_minor, and every Stripe refund is its own core.refunds row with its own amount and date.

Expected values are written by hand from Stripe's published prices, which the sandbox documents (2.9% + 30¢ for a
US card, 1.5% + 20p for a standard UK card): a $100.00 charge costs $3.20, a £100.00 charge £1.70.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .conftest import PARTITIONS, materialize_all_partitions, warehouse_rows
from .test_core_models import build


def at(moment: str) -> float:
    return datetime.fromisoformat(moment).timestamp()


def plant(sandbox) -> dict[str, str]:
    """A US customer pays $100.00 on 2026-03-07 and gets $10.00 back on 03-08 and $5.00 on 03-09; a UK customer pays
    £100.00 on 03-08."""
    stripe = sandbox.emulator("stripe")
    customers = stripe.dump("customers")
    us = next(c for c in customers if c["currency"] == "usd")
    uk = next(c for c in customers if c["currency"] == "gbp")
    stripe.set_clock(at(f"{PARTITIONS[0]}T09:00:00+00:00"))
    charge = stripe.new_charge(10000, "usd", us, description="S10 planted US charge")
    stripe.set_clock(at(f"{PARTITIONS[1]}T10:00:00+00:00"))
    first = stripe.refund(charge["id"], 1000)
    uk_charge = stripe.new_charge(10000, "gbp", uk, description="S10 planted UK charge")
    stripe.set_clock(at(f"{PARTITIONS[2]}T11:00:00+00:00"))
    second = stripe.refund(charge["id"], 500)
    return {"charge": charge["id"], "uk_charge": uk_charge["id"], "first": first["id"], "second": second["id"]}


def extract(settings, *streams: str) -> None:
    for stream in streams:
        materialize_all_partitions(settings, "stripe", stream)


def test_fees_wait_for_the_balance_transactions_then_come_from_them(settings, sandbox):
    planted = plant(sandbox)
    extract(settings, "charges", "refunds")
    build(settings)  # the balance transactions are not read yet: payments build, their fee is unknown
    fees = dict(warehouse_rows(settings, "SELECT source_id, fee_minor FROM core.payments WHERE source_system = "
                                         "'stripe' AND source_id IN (?, ?)", [planted["charge"], planted["uk_charge"]]))
    assert fees == {planted["charge"]: None, planted["uk_charge"]: None}

    extract(settings, "balance_transactions")
    build(settings)
    rows = warehouse_rows(settings, "SELECT source_id, currency, amount_minor, fee_minor, refunded_minor, status "
                                    "FROM core.payments WHERE source_id IN (?, ?) ORDER BY currency DESC",
                          [planted["charge"], planted["uk_charge"]])
    assert rows == [(planted["charge"], "USD", 10000, 320, 1500, "succeeded"),
                    (planted["uk_charge"], "GBP", 10000, 170, 0, "succeeded")]
    unknown = warehouse_rows(settings, "SELECT count(*) FROM core.payments WHERE source_system = 'stripe' "
                                       "AND fee_minor IS NULL")
    assert unknown == [(0,)], "every Stripe charge of the world has its balance transaction"


def test_each_partial_refund_is_its_own_row_with_its_amount_and_date(settings, sandbox):
    planted = plant(sandbox)
    extract(settings, "charges", "refunds", "balance_transactions")
    build(settings)
    rows = warehouse_rows(settings, """
        SELECT source_id, payment_source_id, status, currency, amount_minor, refunded_at, legal_entity
        FROM core.refunds WHERE payment_source_id = ? ORDER BY refunded_at""", [planted["charge"]])
    entity = rows[0][6]
    assert [r[:6] for r in rows] == [
        (planted["first"], planted["charge"], "succeeded", "USD", 1000, datetime(2026, 3, 8, 10, tzinfo=UTC)),
        (planted["second"], planted["charge"], "succeeded", "USD", 500, datetime(2026, 3, 9, 11, tzinfo=UTC)),
    ]
    assert rows[1][6] == entity, "both refunds belong where their payment does"
