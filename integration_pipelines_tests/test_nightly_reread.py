"""Streams that list by creation time and have no change feed (Square payments) are re-read over a trailing window
by the nightly run, so a refund made days after the payment arrives by the next night with no webhook; a backfill
of one day reads only that day. Stripe needs no re-read: its Events API feed brings such changes
(test_stripe_change_feed.py)."""

from __future__ import annotations

import dagster as dg

from integration_pipelines.assets.extract import build_extract_asset, covered_by_change_feed
from integration_pipelines.connectors.registry import get_system
from integration_pipelines.resources import WarehouseResource

from .conftest import PARTITIONS, instance_for, materialize_stream, warehouse_rows

NIGHTLY = {"integration_pipelines/kind": "nightly"}


def run(settings, partition: str, tags: dict[str, str] | None = None) -> dg.ExecuteInProcessResult:
    spec = get_system("square")
    asset = build_extract_asset(spec, spec.stream("payments"), settings)
    return dg.materialize([asset], resources={"warehouse": WarehouseResource(database=settings.warehouse_database)},
                          partition_key=partition, tags=tags, instance=instance_for(settings))


def test_a_refund_days_after_the_payment_arrives_with_the_next_nightly_run_only(settings, sandbox):
    square = sandbox.emulator("square")
    paid_on = [p for p in square.dump("payments") if p["created_at"].startswith(PARTITIONS[2])]
    assert paid_on, "the seeded world has Square payments on its last day"
    for day in PARTITIONS:
        materialize_stream(settings, "square", "payments", day)
    refunded = square.touch("payments", len(square.dump("payments")))  # every payment refunded 1.00, today
    target = paid_on[0]["id"]
    assert target in refunded

    later = "2026-03-12"  # three days after the payment
    run(settings, later)  # a backfill of a later day: the payment's day is not re-read
    assert warehouse_rows(settings, "SELECT _raw->>'$.refunded_money.amount' FROM raw_square.payments "
                                    "WHERE _pk = ?", [target]) == [(None,)]
    run(settings, later, tags=NIGHTLY)  # the nightly run of that day re-reads the 14 days before it
    assert warehouse_rows(settings, "SELECT _raw->>'$.refunded_money.amount' FROM raw_square.payments "
                                    "WHERE _pk = ?", [target]) == [("100",)]


def test_only_streams_without_a_change_feed_are_re_read():
    stripe, square = get_system("stripe"), get_system("square")
    assert covered_by_change_feed(stripe, stripe.stream("charges"))
    assert covered_by_change_feed(stripe, stripe.stream("refunds"))
    assert not covered_by_change_feed(square, square.stream("payments"))
