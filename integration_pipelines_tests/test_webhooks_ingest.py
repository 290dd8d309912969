"""The sensor and the ingest run: batches with stable run keys, no file skipped or processed twice, keyed
upserts (a replayed event changes nothing), and a crash that leaves the files to be retried."""

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
from integration_pipelines.webhooks.definitions import INGEST_JOB, SENSOR_NAME, build_webhook_definitions
from integration_pipelines.webhooks.ingest import replay
from integration_pipelines.webhooks.landing import LocalLandingStore
from integration_pipelines.webhooks.receiver import envelope
from integration_pipelines.webhooks.testing import scrubbed_environment_names

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class Env:
    def __init__(self, root: Path, batch_files: int = 500) -> None:
        self.settings = Settings(data_dir=root, warehouse=str(root / "warehouse.duckdb"))
        self.config = WebhookSettings(store_dir=root, batch_files=batch_files, max_runs_per_tick=10)
        self.defs = build_webhook_definitions(self.settings, config=self.config)
        self.store = LocalLandingStore(root)
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: str | None = None
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
        context = dg.build_sensor_context(cursor=self.cursor, instance=self.instance, definitions=self.defs,
                                          resources={"webhook_landing": self.defs.resources["webhook_landing"]})
        result = sensor(context)
        if result.cursor is not None:
            self.cursor = result.cursor
        return result

    def run(self, request: dg.RunRequest, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def(INGEST_JOB)
        return job.execute_in_process(run_config=request.run_config, instance=self.instance,
                                      tags=request.tags, raise_on_error=raise_on_error)

    def drain(self) -> int:
        runs = 0
        while True:
            result = self.tick()
            if not result.run_requests:
                return runs
            for request in result.run_requests:
                self.run(request)
                runs += 1

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


def test_sensor_batches_files_with_stable_run_keys_and_never_skips_a_late_file(tmp_path, monkeypatch):
    for name in scrubbed_environment_names():
        monkeypatch.delenv(name)
    env = Env(tmp_path / "data", batch_files=50)
    for i in range(120):
        env.land_charge(f"evt_{i:04d}", f"ch_{i:04d}")
    first = env.tick()
    assert [int(r.tags["webhooks/files"]) for r in first.run_requests] == [50, 50, 20]
    keys = [r.run_key for r in first.run_requests]
    assert len(set(keys)) == 3
    assert env.store.list("landing") == []
    # a file that arrives after the listing (during or after the tick) is simply still in landing/
    env.land_charge("evt_late", "ch_late")
    second = env.tick()
    assert len(second.run_requests) == 1 and second.run_requests[0].tags["webhooks/files"] == "1"
    assert second.run_requests[0].run_key not in keys
    assert env.tick().skip_reason
    for request in [*first.run_requests, *second.run_requests]:
        env.run(request)
    assert env.rows("SELECT count(*), count(DISTINCT _pk) FROM raw_stripe.charges") == [(121, 121)]
    assert env.rows("SELECT count(*) FROM raw_webhooks.events") == [(121,)]
    assert len(env.store.list("processed")) == 121 and env.store.batches() == []


def test_a_tick_that_crashed_after_claiming_is_re_requested_with_the_same_run_key(env):
    env.land_charge("evt_a", "ch_a")
    crashed = env.tick()
    env.cursor = None  # the crashed tick's cursor was never stored
    again = env.tick()
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in crashed.run_requests]
    env.run(again.run_requests[0])
    assert env.tick().skip_reason


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
    request = env.tick().run_requests[0]
    result = env.run(request)
    metadata = result.asset_materializations_for_node("webhooks__events")[0].metadata
    assert metadata["inserted"].value == 0 and metadata["updated"].value == 0
    assert env.rows("SELECT _pk, _run_id, _raw FROM raw_stripe.charges ORDER BY _pk") == before
    assert env.rows("SELECT count(*), count(DISTINCT _pk) FROM raw_webhooks.events") == [(3, 3)]


def test_a_crash_in_the_ingest_leaves_the_files_to_be_replayed(env, monkeypatch):
    env.land_charge("evt_x", "ch_x")
    env.land_charge("evt_y", "ch_y")
    request = env.tick().run_requests[0]

    def broken(self, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Warehouse, "load_spool", broken)
    assert not env.run(request, raise_on_error=False).success
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


def test_new_files_wait_while_an_ingest_run_is_in_flight_then_go_in_one_batch(tmp_path):
    env = Env(tmp_path)
    env.config = env.config.model_copy(update={"max_inflight_runs": 1})
    env.defs = build_webhook_definitions(env.settings, config=env.config)
    env.land_charge("evt_a", "ch_a")
    first = env.tick()
    assert len(first.run_requests) == 1
    # the run is requested but not finished (queued behind the warehouse pool, say)
    job = env.defs.resolve_job_def("webhook_ingest")
    in_flight = env.instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.NOT_STARTED,
                                                run_config=first.run_requests[0].run_config)
    for n in range(5):
        env.land_charge(f"evt_b{n}", f"ch_b{n}")
    waiting = env.tick()
    assert waiting.run_requests == [] and "in flight" in waiting.skip_reason.skip_message
    env.run(first.run_requests[0])
    env.instance.report_run_canceled(in_flight)  # the stand-in run ends
    batched = env.tick()
    assert len(batched.run_requests) == 1 and batched.run_requests[0].tags["webhooks/files"] == "5"


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
