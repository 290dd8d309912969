"""The sensor and the event lane: the sensor starts one worker when events wait; the worker applies every
landed file once in bounded batches (a late file is simply taken by a later batch), keyed upserts (a replayed
event changes nothing), a batch left claimed by a dead worker is applied by the next one, and a crash leaves
the files to be replayed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from integration_pipelines.settings import Settings
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.webhooks.config import WebhookSettings
from integration_pipelines.webhooks.definitions import LANE_JOB, SENSOR_NAME, build_webhook_definitions
from integration_pipelines.webhooks.ingest import replay
from integration_pipelines.webhooks.landing import LocalLandingStore
from integration_pipelines.webhooks.lane import hold_lane
from integration_pipelines.webhooks.receiver import envelope
from integration_pipelines.webhooks.testing import batch_metadata, drain_event_lane, scrubbed_environment_names

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class Env:
    def __init__(self, root: Path, batch_files: int = 500) -> None:
        self.settings = Settings(data_dir=root, warehouse=str(root / "warehouse.duckdb"))
        self.config = WebhookSettings(store_dir=root, batch_files=batch_files)
        self.defs = build_webhook_definitions(self.settings, config=self.config)
        self.store = LocalLandingStore(root)
        self.instance = dg.DagsterInstance.ephemeral()
        self.n = 0

    def land_charge(self, event_id: str, charge_id: str, amount_refunded: int = 0, kind: str = "charge.succeeded"
                    ) -> None:
        body = json.dumps({"id": event_id, "type": kind, "object": "event", "data": {"object": {
            "id": charge_id, "object": "charge", "amount": 1000, "amount_refunded": amount_refunded,
            "created": 1773100000, "currency": "eur"}}}).encode()
        self.n += 1
        received = T0 + timedelta(milliseconds=self.n)
        assert self.store.land("stripe", received.strftime("%Y-%m-%d"), event_id,
                               envelope("stripe", event_id, kind, received, {"content-type": "application/json"},
                                        body))

    def tick(self) -> dg.SensorResult:
        sensor = self.defs.resolve_sensor_def(SENSOR_NAME)
        context = dg.build_sensor_context(instance=self.instance, definitions=self.defs,
                                          resources={"webhook_landing": self.defs.resources["webhook_landing"]})
        return sensor(context)

    def run(self, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        return drain_event_lane(self.defs, self.instance, raise_on_error=raise_on_error)

    def drain(self) -> int:
        """Batches the lane applied."""
        return len(batch_metadata(self.run()))

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(self.settings.warehouse_database, read_only=True) as con:
            return con.execute(sql).fetchall()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return Env(tmp_path / "data")


def test_definitions_load(env):
    dg.Definitions.validate_loadable(env.defs)
    assert env.defs.get_assets_def(dg.AssetKey(["webhooks", "events"])).op.pool == "warehouse"


def test_the_lane_applies_every_file_once_in_bounded_batches_and_a_late_file_in_a_later_one(tmp_path, monkeypatch):
    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)
    env = Env(tmp_path / "data", batch_files=50)
    for i in range(120):
        env.land_charge(f"evt_{i:04d}", f"ch_{i:04d}")
    request = env.tick()
    assert len(request.run_requests) == 1 and request.run_requests[0].job_name in (None, LANE_JOB)
    assert [m["files"] for m in batch_metadata(env.run())] == [50, 50, 20]
    assert env.store.list("landing") == [] and env.store.batches() == []
    assert env.tick().skip_reason
    # a file that arrives after the worker stopped waits in landing/ and starts the next worker
    env.land_charge("evt_late", "ch_late")
    assert len(env.tick().run_requests) == 1
    assert [m["files"] for m in batch_metadata(env.run())] == [1]
    assert env.rows("SELECT count(*), count(DISTINCT _pk) FROM raw_stripe.charges") == [(121, 121)]
    assert env.rows("SELECT count(*) FROM raw_webhooks.events") == [(121,)]
    assert len(env.store.list("processed")) == 121 and env.store.batches() == []


def test_the_sensor_starts_no_second_worker_while_one_holds_the_lane_or_is_starting(env):
    env.land_charge("evt_a", "ch_a")
    with hold_lane(env.store.root, timeout=1):
        held = env.tick()
    assert held.run_requests == [] and "running" in held.skip_reason.skip_message
    job = env.defs.resolve_job_def(LANE_JOB)
    starting = env.instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.NOT_STARTED)
    assert env.tick().run_requests == []
    env.instance.report_run_canceled(starting)
    assert len(env.tick().run_requests) == 1


def test_a_batch_left_claimed_by_a_dead_worker_is_applied_by_the_next_one(env):
    env.land_charge("evt_a", "ch_a")
    env.land_charge("evt_b", "ch_b")
    assert len(env.store.claim("0000000000001-lane-dead00", limit=1)) == 1  # the worker died after claiming
    assert env.tick().run_requests, "a claimed, unapplied batch is work too"
    assert [m["files"] for m in batch_metadata(env.run())] == [1, 1]
    assert env.rows("SELECT _pk FROM raw_stripe.charges ORDER BY 1") == [("ch_a",), ("ch_b",)]
    assert env.store.batches() == [] and env.tick().skip_reason


def test_replayed_and_repeated_events_never_duplicate_rows_and_the_latest_snapshot_wins(env):
    env.land_charge("evt_1", "ch_1")
    env.land_charge("evt_2", "ch_1", amount_refunded=300, kind="charge.refunded")
    env.land_charge("evt_3", "ch_2")
    assert env.drain() == 1
    assert env.rows("SELECT _pk, amount_refunded FROM raw_stripe.charges ORDER BY _pk") == [("ch_1", 300),
                                                                                           ("ch_2", 0)]
    before = env.rows("SELECT _pk, _run_id, _raw FROM raw_stripe.charges ORDER BY _pk")
    # replay every processed file (as an operator would after a scare): nothing changes
    for ref in env.store.list("processed"):
        env.store.move(ref, "landing")
    (metadata,) = batch_metadata(env.run())
    assert metadata["inserted"] == 0 and metadata["updated"] == 0
    assert env.rows("SELECT _pk, _run_id, _raw FROM raw_stripe.charges ORDER BY _pk") == before
    assert env.rows("SELECT count(*), count(DISTINCT _pk) FROM raw_webhooks.events") == [(3, 3)]


def test_a_crash_in_the_ingest_leaves_the_files_to_be_replayed(env, monkeypatch):
    env.land_charge("evt_x", "ch_x")
    env.land_charge("evt_y", "ch_y")

    def broken(self, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Warehouse, "load_spool", broken)
    assert not env.run(raise_on_error=False).success
    failed = env.store.list("failed")
    assert len(failed) == 2 and env.store.list("processed") == []
    assert "disk on fire" in (env.store.read_note(failed[0]) or "")
    monkeypatch.undo()
    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)
    assert env.tick().skip_reason  # failed files wait for an operator
    moved = replay(env.store, provider="stripe", event_id="evt_x")
    assert [r.event_id for r in moved] == ["evt_x"]
    assert len(replay(env.store)) == 1
    assert env.drain() == 1
    assert env.rows("SELECT _pk FROM raw_stripe.charges ORDER BY _pk") == [("ch_x",), ("ch_y",)]
    assert env.store.list("failed") == []


def test_a_bad_file_fails_alone(env):
    env.land_charge("evt_good", "ch_good")
    env.store.land("stripe", "2026-03-10", "evt_bad", b'{"provider": "stripe", "truncated')  # a corrupt file
    assert env.drain() == 1
    assert [r.event_id for r in env.store.list("failed")] == ["evt_bad"]
    assert env.rows("SELECT _pk FROM raw_stripe.charges") == [("ch_good",)]


def test_events_without_objects_go_to_the_provider_events_table(env):
    hubspot = json.dumps([{"eventId": 1, "subscriptionType": "contact.propertyChange", "objectId": 9},
                          {"eventId": 2, "subscriptionType": "contact.creation", "objectId": 10}]).encode()
    env.store.land("hubspot", "2026-03-10", "b-1", envelope("hubspot", "b-1", "contact", T0, {}, hubspot))
    shop = b'{"inventory_item_id": 5, "location_id": 6, "available": 3, "updated_at": "2026-03-10T00:00:00Z"}'
    env.store.land("shopify", "2026-03-10", "wh-1", envelope(
        "shopify", "wh-1", "inventory_levels/update", T0, {"x-shopify-topic": "inventory_levels/update"}, shop))
    assert env.drain() == 1
    assert env.rows("SELECT _pk FROM raw_hubspot.events ORDER BY _pk") == [("1",), ("2",)]
    # keyed as the extract keys it (the spec's primary key), so an event and a read upsert the same row
    assert env.rows("SELECT _pk, available FROM raw_shopify.inventory_levels") == [
        ("gid://shopify/InventoryLevel/6?inventory_item_id=5", 3)]
    assert env.rows("SELECT provider, event_id FROM raw_webhooks.events ORDER BY 1") == [
        ("hubspot", "b-1"), ("shopify", "wh-1")]


def test_temp_files_of_a_killed_writer_are_swept_only_when_old(tmp_path):
    import os
    import time

    store = LocalLandingStore(tmp_path)
    assert store.land("stripe", "2026-03-09", "evt_1", b"{}")
    day = tmp_path / "landing" / "stripe" / "2026-03-09"
    old, fresh = day / ".evt_2.json.aaaa.tmp", day / ".evt_3.json.bbbb.tmp"
    old.write_bytes(b"half")
    fresh.write_bytes(b"half")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    assert store.sweep_temp(older_than=600) == 1
    assert not old.exists() and fresh.exists(), "a writer that may still be running keeps its temp file"
    assert [ref.event_id for ref in store.list("landing")] == ["evt_1"]
