"""Stripe end to end: sandbox over real HTTP → extract assets → DuckDB, plus the official SDK as a judge."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import stripe

from integration_pipelines.connectors.stripe import SYSTEM
from integration_pipelines.sandbox.stripe import EVENT_RETENTION_SECONDS

from .conftest import ANCHOR, PARTITIONS, loaded_keys, materialize_all_partitions, materialize_stream, warehouse_rows

STREAMS = [s.name for s in SYSTEM.streams]


def served_truth(sandbox, stream: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The ids the API serves for a stream: every record, except events past Stripe's 30-day retention."""
    emulator = sandbox.emulator("stripe")
    oldest = emulator.now() - EVENT_RETENTION_SECONDS
    return sorted(o["id"] for o in emulator.dump(stream) if stream != "events" or o["created"] >= oldest)


def world_clock(sandbox) -> None:  # type: ignore[no-untyped-def]
    """Put the emulator's clock at the world's anchor (March 2026), so the world's history is still inside the
    30 days of events Stripe serves; the lists of customers, charges and invoices do not depend on the clock.

    The seeded world has no refunds or disputes, so some are made first, on the middle partition's day: a
    partial refund, a full one and a dispute (each also an event)."""
    emulator = sandbox.emulator("stripe")
    emulator.set_clock(datetime.fromisoformat(f"{PARTITIONS[1]}T12:00:00+00:00").timestamp())
    charges = emulator.dump("charges")
    emulator.refund(charges[0]["id"], 100, reason="requested_by_customer")
    emulator.refund(charges[1]["id"])
    emulator.open_dispute(charges[2]["id"], reason="product_not_received")
    emulator.set_clock(ANCHOR.timestamp())


@pytest.mark.parametrize("stream", STREAMS)
def test_every_partition_lands_exactly_the_sandbox_records(settings, sandbox, stream):
    world_clock(sandbox)
    truth = served_truth(sandbox, stream)
    assert truth, "the seeded world must hold records for every stream"
    materialize_all_partitions(settings, "stripe", stream)
    assert loaded_keys(settings, "stripe", stream) == truth

    # the raw row keeps the original JSON, the cursor and the lineage columns
    raw, cursor, source, run_id = warehouse_rows(
        settings, f"SELECT _raw, _cursor, _source_system, _run_id FROM raw_stripe.{stream} LIMIT 1")[0]
    assert json.loads(raw)["object"] in {"customer", "charge", "invoice", "refund", "dispute", "event",
                                        "balance_transaction", "subscription"}
    assert cursor.isdigit() and source == "stripe" and run_id


def test_rerun_changes_nothing(settings, sandbox):
    materialize_all_partitions(settings, "stripe", "charges")
    before = warehouse_rows(settings, "SELECT _pk, _raw, _run_id FROM raw_stripe.charges ORDER BY _pk")
    result = materialize_stream(settings, "stripe", "charges", PARTITIONS[1])
    metadata = result.asset_materializations_for_node("stripe__charges")[0].metadata
    assert metadata["inserted"].value == 0 and metadata["updated"].value == 0
    assert metadata["unchanged"].value == metadata["records_read"].value > 0
    after = warehouse_rows(settings, "SELECT _pk, _raw, _run_id FROM raw_stripe.charges ORDER BY _pk")
    assert after == before


def test_small_pages_and_twenty_percent_faults_still_land_exactly(settings, sandbox, monkeypatch):
    monkeypatch.setenv("STRIPE_PAGE_SIZE", "3")
    monkeypatch.setenv("STRIPE_MAX_RETRIES", "12")
    sandbox.set_faults("stripe", error_rate=0.06, rate_limit_rate=0.06, drop_rate=0.04, malformed_rate=0.0,
                       retry_after=0, seed=3)
    world_clock(sandbox)
    for stream in STREAMS:
        materialize_all_partitions(settings, "stripe", stream)
        truth = served_truth(sandbox, stream)
        assert loaded_keys(settings, "stripe", stream) == truth
    faults = [r for r in sandbox.state.request_log("stripe") if r["fault"]]
    assert len(faults) >= 5, "the fault injector must actually have fired"


def test_materialization_metadata_is_what_a_user_reads(settings, sandbox):
    result = materialize_stream(settings, "stripe", "customers", PARTITIONS[0])
    metadata = result.asset_materializations_for_node("stripe__customers")[0].metadata
    assert metadata["dagster/row_count"].value > 0
    assert metadata["dagster/table_name"].value == "raw_stripe.customers"
    columns = {c.name for c in metadata["dagster/column_schema"].schema.columns}
    assert {"id", "email", "_pk", "_raw", "_cursor", "_extracted_at", "_run_id", "_source_system"} <= columns
    described = {c.name: c.description for c in metadata["dagster/column_schema"].schema.columns}
    assert described["_raw"].startswith("the whole record as the API sent it") and described["email"] is None
    assert "| email" in metadata["preview"].value or "email" in metadata["preview"].value
    assert metadata["mode"].value == "sandbox"


def test_official_sdk_paginates_and_idempotency_key_creates_one_customer(sandbox_server, sandbox):
    client = stripe.StripeClient(
        SYSTEM.values["api_key"].sandbox,
        base_addresses={"api": sandbox_server.url},
        max_network_retries=0,
    )
    listed = [c.id for c in client.v1.customers.list(params={"limit": 2}).auto_paging_iter()]
    assert sorted(listed) == sorted(o["id"] for o in sandbox.emulator("stripe").dump("customers"))
    assert len(listed) == len(set(listed)) > 2

    params = {"email": "new.customer@example.com", "name": "New Customer", "metadata": {"source": "test"}}
    first = client.v1.customers.create(params=params, options={"idempotency_key": "test-key-1"})
    second = client.v1.customers.create(params=params, options={"idempotency_key": "test-key-1"})
    assert first.id == second.id
    created = [o for o in sandbox.emulator("stripe").dump("customers") if o["email"] == "new.customer@example.com"]
    assert len(created) == 1 and created[0]["metadata"] == {"source": "test"}

    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={**params, "name": "Other"}, options={"idempotency_key": "test-key-1"})


def test_wrong_key_names_the_variable_and_hides_the_key(settings, sandbox, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_FAKE_wrong_key_0123456789")
    monkeypatch.setenv("STRIPE_BASE_URL", settings.sandbox_url)
    result = materialize_stream(settings, "stripe", "customers", PARTITIONS[0], raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error
    text = error.to_string()
    assert "STRIPE_API_KEY" in text and "401" in text
    assert "sk_test_FAKE_wrong_key_0123456789" not in text


def test_malformed_page_fails_with_context_and_commits_nothing(settings, sandbox, monkeypatch):
    monkeypatch.setenv("STRIPE_PAGE_SIZE", "2")
    materialize_all_partitions(settings, "stripe", "charges")
    before = warehouse_rows(settings, "SELECT _pk, _raw FROM raw_stripe.charges ORDER BY _pk")
    sandbox.emulator("stripe").touch("charges", 50)
    sandbox.set_faults("stripe", malformed_rate=1.0, malformed_kind="html")
    result = materialize_stream(settings, "stripe", "charges", PARTITIONS[-1], raise_on_error=False)
    assert not result.success
    text = result.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "stripe/charges" in text and "not valid JSON" in text and "Bad Gateway" in text
    assert "Authorization" not in text and SYSTEM.values["api_key"].sandbox not in text
    assert warehouse_rows(settings, "SELECT _pk, _raw FROM raw_stripe.charges ORDER BY _pk") == before
