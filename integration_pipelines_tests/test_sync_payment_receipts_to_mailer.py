"""Scenario 11: successful payments → one receipt email each through the Postmark-style mailer sandbox."""

from __future__ import annotations

import duckdb
import pytest

from .conftest import warehouse_rows
from .test_core_models import stripe_core_warehouse
from .test_syncs import posts_to, sync


@pytest.fixture(autouse=True)
def sync_start(settings, monkeypatch):
    """The sandbox world is history (anchored in March 2026): its syncs start with it, not at their first run."""
    monkeypatch.setenv("IP_SYNC_START", "2026-03-01")


NAME = "payment_receipts_to_mailer"


def expected_receipts(settings) -> dict[str, str]:
    """payment key → the email the receipt must go to, straight from the warehouse."""
    rows = warehouse_rows(settings, """
        SELECT p.source_system || ':' || p.source_id, c.email FROM core.payments p
        JOIN core.customers c ON c.golden_id = p.golden_customer_id
        WHERE p.kind = 'processor' AND p.status = 'succeeded' AND c.email IS NOT NULL""")
    return dict(rows)


def receipts(sandbox) -> dict[str, list[dict]]:
    sent: dict[str, list[dict]] = {}
    for message in sandbox.emulator("mailer").dump("outbound_messages"):
        sent.setdefault(message["Metadata"]["idempotency_key"], []).append(message)
    return sent


@pytest.fixture
def prepared(settings, sandbox, tmp_path_factory):
    """Stripe extracted and the core models built; the sandbox world is the same in every test (same seed), so
    the warehouse is built once per session and copied."""
    stripe_core_warehouse(settings, tmp_path_factory)
    expected = expected_receipts(settings)
    assert len(expected) >= 8, "the seeded world must have successful Stripe payments of known customers"
    return expected


def assert_exactly_one_receipt_each(sandbox, expected: dict[str, str]) -> None:
    sent = receipts(sandbox)
    assert set(sent) == set(expected)
    for key, email in expected.items():
        assert len(sent[key]) == 1, f"{key}: {len(sent[key])} receipts"
        message = sent[key][0]
        assert message["To"] == email and message["Recipients"] == [email]
        assert message["From"] == "receipts@sandbox.integration-pipelines.invalid"
        assert message["Metadata"]["payment_id"] == key.split(":", 1)[1]
        assert message["Subject"].startswith("Your payment receipt: ") and message["TextBody"]
        assert key.split(":", 1)[1] in message["HtmlBody"]


def test_one_receipt_per_payment_and_a_rerun_sends_nothing(settings, sandbox, prepared):
    result = sync(settings, NAME)
    assert (result.created, result.failed) == (len(prepared), 0)
    assert_exactly_one_receipt_each(sandbox, prepared)
    ledger = dict(warehouse_rows(settings, "SELECT record_key, external_id FROM sync.ledger WHERE sync_name = ? "
                                           "AND status = 'synced'", [NAME]))
    by_id = {m["MessageID"]: m["Metadata"]["idempotency_key"]
             for m in sandbox.emulator("mailer").dump("outbound_messages")}
    assert {by_id[v]: k for k, v in ledger.items()} == {k: k for k in prepared}  # ledger holds each MessageID

    sandbox.state.clear_requests()
    again = sync(settings, NAME)
    assert again.plan.counts()["creates"] == 0 and posts_to(sandbox, "mailer") == []
    assert_exactly_one_receipt_each(sandbox, prepared)


def test_faults_end_in_exactly_one_receipt_each(settings, sandbox, prepared, monkeypatch):
    """A 429 is retried (the mailer did not take the message); after a 5xx or a cut connection the client cannot
    know whether the receipt went out, and an email has no idempotency key, so it is held in doubt, never sent
    again by itself. The operator checks the mailer and releases the ones that are not there."""
    monkeypatch.setenv("MAILER_MAX_RETRIES", "12")
    sandbox.set_faults("mailer", error_rate=.2, rate_limit_rate=.1, drop_rate=.1, retry_after=0,
                       methods=["POST", "PUT", "PATCH"], seed=3)
    faulted_run = sync(settings, NAME)
    assert all(len(m) == 1 for m in receipts(sandbox).values())  # no duplicate even mid-faults
    assert faulted_run.created == len(receipts(sandbox))
    assert faulted_run.in_doubt == len(prepared) - faulted_run.created > 0 and faulted_run.failed == 0
    faulted = [r for r in posts_to(sandbox, "mailer") if r["fault"]]
    assert {r["fault"] for r in faulted} >= {"error", "rate_limit", "drop"}
    sandbox.clear_faults()
    sandbox.state.clear_requests()
    calm = sync(settings, NAME)  # nothing in doubt is sent without a person deciding
    assert calm.plan.counts()["in_doubt"] == faulted_run.in_doubt and posts_to(sandbox, "mailer") == []
    held = [k for (k,) in warehouse_rows(settings, "SELECT record_key FROM sync.ledger WHERE sync_name = ? "
                                                   "AND status = 'in_doubt'", [NAME])]
    assert not set(held) & set(receipts(sandbox))  # (the twin shows they never went out)
    with duckdb.connect(settings.warehouse_database) as con:  # the operator releases them (docs/syncs.md)
        con.execute("DELETE FROM sync.ledger WHERE sync_name = ? AND status = 'in_doubt'", [NAME])
    assert sync(settings, NAME).created == len(held)
    assert_exactly_one_receipt_each(sandbox, prepared)


def test_a_response_lost_after_the_send_does_not_send_a_second_receipt(settings, sandbox, prepared):
    """The mailer accepted a receipt but the answer never arrived (the ledger does not know it): the re-send
    carries the same Metadata.idempotency_key, which the sandbox twin dedupes on."""
    key = sorted(prepared)[0]
    result = sync(settings, NAME)
    first_id = next(m["MessageID"] for m in sandbox.emulator("mailer").dump("outbound_messages")
                    if m["Metadata"]["idempotency_key"] == key)
    with duckdb.connect(settings.warehouse_database) as con:
        con.execute("DELETE FROM sync.ledger WHERE sync_name = ? AND record_key = ?", [NAME, key])
    again = sync(settings, NAME)
    assert (result.created, again.created) == (len(prepared), 1)
    assert_exactly_one_receipt_each(sandbox, prepared)
    assert warehouse_rows(settings, "SELECT external_id FROM sync.ledger WHERE record_key = ?", [key]) == [
        (first_id,)]


def test_an_inactive_recipient_fails_alone_and_is_retried_next_run(settings, sandbox, prepared, monkeypatch):
    _, bad_email = sorted(prepared.items())[0]
    shared = [k for k, e in prepared.items() if e == bad_email]
    assert len(shared) / len(prepared) <= 0.25
    sandbox.emulator("mailer").inactive.add(bad_email)
    monkeypatch.setenv("IP_SYNC_RETRY_BACKOFF_SECONDS", "0")  # (else they wait 5 minutes before the next send)
    result = sync(settings, NAME)
    assert (result.created, result.failed) == (len(prepared) - len(shared), len(shared))
    errors = warehouse_rows(settings, "SELECT record_key, operation, message FROM sync.errors WHERE sync_name = ?",
                            [NAME])
    assert {e[0] for e in errors} == set(shared) and errors[0][1] == "create"
    assert "marked as inactive" in errors[0][2]
    assert set(receipts(sandbox)) == set(prepared) - set(shared)

    sandbox.state.clear_requests()
    again = sync(settings, NAME)  # only the failed record(s) are retried; known failures do not fail the run
    assert (again.failed, again.new_failures) == (len(shared), [])
    assert len(posts_to(sandbox, "mailer")) == len(shared)
    sandbox.emulator("mailer").inactive.clear()  # the address is reactivated in the mailer
    assert sync(settings, NAME).created == len(shared)
    assert_exactly_one_receipt_each(sandbox, prepared)


def test_dry_run_sends_zero_requests(settings, sandbox, prepared):
    sandbox.state.clear_requests()
    result = sync(settings, NAME, dry_run=True)
    assert result.plan.counts()["creates"] == len(prepared) and result.created == 0
    assert sandbox.state.request_log("mailer") == []
    sample = result.samples[0]["payload"]
    assert sample["From"] == "<from_address>" and sample["Metadata"]["idempotency_key"] == result.samples[0]["key"]

