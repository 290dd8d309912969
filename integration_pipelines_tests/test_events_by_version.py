"""Events are applied by version, never by arrival: a late, out-of-order or replayed delivery cannot undo a newer
change, whether the newer state came from another event or from an API read.

The world of each test is written out by hand: a €10.00 charge (`ch_1`) created at 12:00, refunded €4.00 at 12:10.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from integration_pipelines.settings import Settings
from integration_pipelines.warehouse.batches import records_to_table
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.warehouse.spool import Spool
from integration_pipelines.webhooks.config import WebhookSettings
from integration_pipelines.webhooks.definitions import build_webhook_definitions
from integration_pipelines.webhooks.landing import LocalLandingStore
from integration_pipelines.webhooks.receiver import envelope
from integration_pipelines.webhooks.testing import batch_metadata, drain_event_lane, scrubbed_environment_names

CREATED = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
REFUNDED = CREATED + timedelta(minutes=10)


def charge_event(event_id: str, at: datetime, refunded: int) -> bytes:
    """A Stripe event as Stripe sends it: `created` is when the change happened, `data.object` the charge after it."""
    kind = "charge.refunded" if refunded else "charge.succeeded"
    return json.dumps({"id": event_id, "object": "event", "type": kind, "created": int(at.timestamp()),
                       "data": {"object": {"id": "ch_1", "object": "charge", "amount": 1000, "currency": "eur",
                                           "amount_refunded": refunded, "refunded": False,
                                           "created": int(CREATED.timestamp())}}}).encode()


class Pipeline:
    """The receiver's landing folder, the sensor and the ingest job of a real Dagster instance (in process)."""

    def __init__(self, root: Path) -> None:
        self.settings = Settings(data_dir=root, warehouse=str(root / "warehouse.duckdb"))
        self.defs = build_webhook_definitions(self.settings, config=WebhookSettings(store_dir=root))
        self.store = LocalLandingStore(root)
        self.instance = dg.DagsterInstance.ephemeral()
        self.deliveries = 0

    def deliver(self, delivery_id: str, body: bytes) -> bool:
        """Land a verified delivery as the receiver does; False when that delivery id was landed before."""
        self.deliveries += 1
        received = datetime(2026, 3, 10, 13, 0, tzinfo=UTC) + timedelta(seconds=self.deliveries)
        return self.store.land("stripe", received.strftime("%Y-%m-%d"), delivery_id,
                               envelope("stripe", delivery_id, "charge", received,
                                        {"content-type": "application/json"}, body))

    def drain(self) -> list[dict[str, Any]]:
        """The event lane run until nothing is landed; each batch's metadata."""
        return batch_metadata(drain_event_lane(self.defs, self.instance))

    def charge(self) -> tuple[int, ...]:
        with duckdb.connect(self.settings.warehouse_database, read_only=True) as con:
            return con.execute("SELECT amount_refunded FROM raw_stripe.charges WHERE _pk = 'ch_1'").fetchone()


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return Pipeline(tmp_path / "data")


def test_a_late_event_delivered_in_a_later_batch_does_not_undo_the_refund(pipeline):
    pipeline.deliver("evt_refund", charge_event("evt_refund", REFUNDED, refunded=400))
    pipeline.drain()
    pipeline.deliver("evt_paid", charge_event("evt_paid", CREATED, refunded=0))  # Stripe retried it: late
    [late] = pipeline.drain()
    assert pipeline.charge() == (400,)
    assert (late["updated"], late["stale"]) == (0, 1)


def test_out_of_order_events_in_one_batch_keep_the_newest(pipeline):
    pipeline.deliver("evt_refund", charge_event("evt_refund", REFUNDED, refunded=400))
    pipeline.deliver("evt_paid", charge_event("evt_paid", CREATED, refunded=0))
    pipeline.drain()
    assert pipeline.charge() == (400,)


def test_the_same_event_twice_and_replayed_under_a_new_delivery_id_changes_nothing(pipeline):
    pipeline.deliver("evt_refund", charge_event("evt_refund", REFUNDED, refunded=400))
    pipeline.drain()
    assert not pipeline.deliver("evt_refund", charge_event("evt_refund", REFUNDED, refunded=400))  # twice
    pipeline.deliver("evt_captured", charge_event("evt_refund", REFUNDED, refunded=400))  # replayed, new id
    runs = pipeline.drain()
    pipeline.deliver("evt_old", charge_event("evt_old", CREATED, refunded=0))  # an old capture, replayed
    runs += pipeline.drain()
    assert pipeline.charge() == (400,)
    assert sum(r["updated"] for r in runs) == 0
    assert sum(r["stale"] for r in runs) == 1


def test_a_late_event_older_than_an_api_read_does_not_overwrite_it(pipeline):
    """The nightly read saw the refund at 12:30; a `charge.succeeded` from 12:00 arriving afterwards is older."""
    warehouse = Warehouse(pipeline.settings.warehouse_database)
    read = {"id": "ch_1", "object": "charge", "amount": 1000, "currency": "eur", "amount_refunded": 400,
            "refunded": False, "created": int(CREATED.timestamp())}
    spool = Spool(pipeline.settings.spool_dir / "extract")
    spool.write(records_to_table([read], source_system="stripe", primary_keys=["ch_1"], cursors=[None],
                                 run_id="extract", extracted_at=REFUNDED + timedelta(minutes=20), first_seq=0))
    warehouse.load_spool(schema="raw_stripe", table="charges", files=spool.files, state=None, run_id="extract")
    spool.cleanup()
    pipeline.deliver("evt_paid", charge_event("evt_paid", CREATED, refunded=0))
    pipeline.drain()
    assert pipeline.charge() == (400,)
    # and a newer event (a second refund, 13:00) still applies after the read
    pipeline.deliver("evt_refund_2", charge_event("evt_refund_2", CREATED + timedelta(hours=1), refunded=1000))
    pipeline.drain()
    assert pipeline.charge() == (1000,)
