"""Scenario 10, Xero side: the UK and German companies' card fees and refunds → posted Xero manual journals, once,
in their own books only (the US company's stay in QuickBooks: test_sync_processor_fees_to_quickbooks.py). Read
back from the Xero emulator's books; the acceptance test reads them through Xero's API
(test_processor_fees_routed_by_entity.py)."""

from __future__ import annotations

import duckdb
import httpx
import pytest
import yaml

from integration_pipelines.connectors.xero import SYSTEM as XERO
from integration_pipelines.sandbox import xero as xero_sandbox
from integration_pipelines.syncs.engine import plan_sync, run_sync
from integration_pipelines.syncs.registry import get_sync
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.warehouse.models import DEFAULT_LEGAL_ENTITIES

from .conftest import materialize_all_partitions, materialize_stream, warehouse_rows
from .test_core_models import build
from .test_syncs import posts_to, sync

FEES, REFUNDS = "processor_fees_to_xero", "processor_refunds_to_xero"
QBO_FEES = "processor_fees_to_quickbooks"
SOURCES = (("square", "payments"), ("stripe", "charges"), ("stripe", "refunds"), ("stripe", "balance_transactions"),
           ("quickbooks", "invoices"), ("xero", "invoices"))
# the sync's Xero accounts (syncs/catalog/processor_fees_to_xero.py): bank fees, card processor clearing, sales refunds
FEES_ACCOUNT, CLEARING, REFUNDS_ACCOUNT = "404", "615", "205"


@pytest.fixture(autouse=True)
def _fast_targets(settings, monkeypatch):
    for prefix in ("QUICKBOOKS", "XERO"):
        monkeypatch.setenv(f"{prefix}_REQUESTS_PER_SECOND", "100")


def extract_and_build(settings) -> None:
    for system, stream in SOURCES:
        materialize_all_partitions(settings, system, stream)
    build(settings)
    materialize_stream(settings, "xero", "manual_journals")


def prepare(settings, sandbox) -> dict:
    """The world's card payments, one UK Square payment partly refunded. The world invoices each customer in their own
    currency, so GBP payments are the UK company's and EUR ones the German company's (both keep their books in Xero),
    USD ones the US company's (QuickBooks)."""
    square = sandbox.emulator("square").payments
    completed = [p for p in square.values() if p["status"] == "COMPLETED" and not p.get("refunded_money")]
    refunded = next(p for p in completed if p["amount_money"]["currency"] == "GBP")
    refunded["refunded_money"] = {"amount": refunded["amount_money"]["amount"] // 2, "currency": "GBP"}
    refunded["refund_ids"] = ["sq_planted_uk_refund_0001"]
    extract_and_build(settings)
    stripe = sandbox.emulator("stripe")
    fees = {t["source"]: t["fee"] for t in stripe.dump("balance_transactions") if t["type"] == "charge"}
    entries = {f"square:{p['id']}": (p["amount_money"]["currency"], sum(f["amount_money"]["amount"]
                                                                      for f in p["processing_fee"]))
               for p in square.values() if p["status"] == "COMPLETED"}
    entries |= {f"stripe:{c['id']}": (c["currency"].upper(), fees[c["id"]]) for c in stripe.dump("charges")
                if c["metadata"].get("accounting_invoice")}
    xero = {key: fee for key, (currency, fee) in entries.items() if currency in ("GBP", "EUR")}
    assert xero and any(k.startswith("square:") for k in xero) and any(k.startswith("stripe:") for k in xero)
    assert all(xero.values()), "every UK and German payment of the world carries a processing fee"
    return {"xero": xero, "us": [k for k, (currency, _) in entries.items() if currency == "USD"],
            "refunded": refunded}


def journals(sandbox, marker: str) -> list[dict]:
    return [j for j in sandbox.emulator("xero").dump("manual_journals") if f"[{marker}]" in j["Narration"]]


def lines(journal: dict) -> dict[str, int]:
    return {line["AccountCode"]: round(line["LineAmount"] * 100) for line in journal["JournalLines"]}


def assert_books(sandbox, planted: dict) -> None:
    for key, fee in planted["xero"].items():
        found = journals(sandbox, f"fee {key}")
        assert len(found) == 1, f"{key}: {len(found)} journals"
        assert found[0]["Status"] == "POSTED" and lines(found[0]) == {FEES_ACCOUNT: fee, CLEARING: -fee}
    refunded = planted["refunded"]
    [refund] = journals(sandbox, "refund square:sq_planted_uk_refund_0001")
    amount = refunded["refunded_money"]["amount"]
    assert lines(refund) == {REFUNDS_ACCOUNT: amount, CLEARING: -amount}
    assert refund["Narration"].startswith(f"square refund sq_planted_uk_refund_0001 of payment {refunded['id']} "
                                          "(Acme Trading Ltd (UK)): ")
    ours = [j for j in sandbox.emulator("xero").dump("manual_journals") if "[fee " in j["Narration"]]
    assert len(ours) == len(planted["xero"]), "no US payment is ever journaled in the UK or German books"


def source_rows(settings, name: str, columns: str) -> list[tuple]:
    """The sync's source as its plan sees it (the settings table and the ledgers it reads exist)."""
    with duckdb.connect(settings.warehouse_database) as con:
        plan_sync(con, get_sync(name))  # loads `_sync_settings` and makes sure the ledgers exist
        return con.execute(f"SELECT {columns} FROM ({get_sync(name).source_sql}) ORDER BY 1").fetchall()


def test_uk_and_german_fees_and_refunds_are_journaled_once_in_their_xero_books(settings, sandbox):
    planted = prepare(settings, sandbox)
    sandbox.state.clear_requests()
    dry = sync(settings, FEES, dry_run=True)
    assert dry.plan.counts()["creates"] == len(planted["xero"]) and posts_to(sandbox, "xero") == []

    fees, refunds = sync(settings, FEES), sync(settings, REFUNDS)
    assert (fees.created, fees.failed, refunds.created, refunds.failed) == (len(planted["xero"]), 0, 1, 0)
    assert_books(sandbox, planted)
    writes = {(r["method"], r["path"]) for r in posts_to(sandbox, "xero") if r["path"].startswith("/api.xro/")}
    assert writes == {("PUT", "/api.xro/2.0/ManualJournals")}

    materialize_stream(settings, "xero", "manual_journals")
    sandbox.state.clear_requests()
    assert (sync(settings, FEES).plan.counts()["creates"], sync(settings, REFUNDS).plan.counts()["creates"]) == (0, 0)
    assert posts_to(sandbox, "xero") == []


def test_every_entry_left_out_of_xero_says_why(settings, sandbox):
    planted = prepare(settings, sandbox)
    reasons = dict(source_rows(settings, FEES, "entry_key, waiting_reason"))
    for key in planted["us"]:
        assert reasons[key] == ("Acme Trading Inc (US) keeps its books in quickbooks: its entries are journaled by the "
                                "quickbooks syncs, not in another company's xero")
    assert all(reasons[key] is None for key in planted["xero"])


def test_with_the_organisations_base_currency_set_other_currencies_wait(settings, sandbox, monkeypatch):
    """A manual journal has no currency: with IP_XERO_BASE_CURRENCY=GBP the German company's EUR fees are not booked
    in that organisation as if they were pounds."""
    monkeypatch.setenv("IP_XERO_BASE_CURRENCY", " gbp")  # read as GBP
    planted = prepare(settings, sandbox)
    rows = [r for r in source_rows(settings, FEES, "entry_key, currency, books_route, waiting_reason")
            if r[0] in planted["xero"]]
    euro = [(key, route, reason) for key, currency, route, reason in rows if currency == "EUR"]
    assert euro and all(route is None and reason == "this EUR payment is not journaled: the connected Xero "
                        "organisation's base currency is GBP (IP_XERO_BASE_CURRENCY) and a manual journal has no "
                        "currency of its own" for _, route, reason in euro)
    result = sync(settings, FEES)
    pounds = [key for key, currency, _, _ in rows if currency == "GBP"]
    assert (result.created, result.failed) == (len(pounds), 0)
    assert all(len(journals(sandbox, f"fee {key}")) == 1 for key in pounds)
    assert all(journals(sandbox, f"fee {key}") == [] for key, _, _ in euro)
    assert len(planted["xero"]) == len(pounds) + len(euro)


def test_an_entry_booked_in_one_companys_books_is_never_booked_in_anothers(settings, sandbox, monkeypatch, tmp_path):
    """The UK company's fees are journaled in Xero; then the legal-entities file is changed so that its books are
    QuickBooks. Those fees wait in the QuickBooks sync (already journaled by the Xero one): no second booking."""
    planted = prepare(settings, sandbox)
    assert sync(settings, FEES).failed == 0
    uk = {key for key, currency in source_rows(settings, FEES, "entry_key, currency")
          if currency == "GBP" and key in planted["xero"]}
    group = yaml.safe_load(DEFAULT_LEGAL_ENTITIES.read_text())
    [entity] = [e for e in group["entities"] if e["legal_entity"] == "Acme Trading Ltd (UK)"]
    entity["books"] = [{"system": "quickbooks", "currencies": ["GBP"]}, {"system": "xero", "currencies": ["GBP"]}]
    moved = tmp_path / "legal_entities.yaml"
    moved.write_text(yaml.safe_dump(group))
    monkeypatch.setenv("IP_LEGAL_ENTITIES_FILE", str(moved))
    build(settings)
    reasons = dict(source_rows(settings, QBO_FEES, "entry_key, waiting_reason"))
    assert uk and all(reasons[key] == "already journaled by processor_fees_to_xero in another company's books: not "
                      "booked again in quickbooks (moving it is a person's decision)" for key in uk)
    sandbox.state.clear_requests()
    assert sync(settings, QBO_FEES).failed == 0
    notes = " ".join(j.get("PrivateNote", "") for j in sandbox.emulator("quickbooks").dump("journal_entries"))
    assert not any(key.split(":", 1)[1] in notes for key in uk)
    assert all(len(journals(sandbox, f"fee {key}")) == 1 for key in uk)


def _xero(url: str) -> httpx.Client:
    """A client of the Xero emulator's API, as a bookkeeper's other app would be."""
    token = httpx.post(url + xero_sandbox.TOKEN_PATH, auth=(XERO.values["client_id"].sandbox,
                                                            XERO.values["client_secret"].sandbox),
                       data={"grant_type": "refresh_token", "refresh_token": XERO.values["refresh_token"].sandbox})
    return httpx.Client(base_url=f"{url}/api.xro/2.0", headers={
        "Authorization": f"Bearer {token.json()['access_token']}", "Accept": "application/json",
        "xero-tenant-id": XERO.values["tenant_id"].sandbox})


def _book_by_hand(client: httpx.Client, narration: str) -> dict:
    answer = client.put("/ManualJournals", json={"ManualJournals": [{
        "Narration": narration, "Date": "2026-03-08", "Status": "POSTED", "JournalLines": [
            {"LineAmount": 1.0, "AccountCode": FEES_ACCOUNT}, {"LineAmount": -1.0, "AccountCode": CLEARING}]}]})
    answer.raise_for_status()
    return answer.json()["ManualJournals"][0]


def test_a_journal_the_books_already_hold_is_linked_not_created_again(settings, sandbox, sandbox_server):
    """Xero keeps no business key on a journal: its narration's marker is the match. A journal already there for an
    entry (an earlier install, a lost ledger), posted or since voided by a person, is linked instead of doubled."""
    planted = prepare(settings, sandbox)
    posted_key, voided_key = sorted(planted["xero"])[:2]
    with _xero(sandbox_server.url) as client:
        posted = _book_by_hand(client, f"booked before [fee {posted_key}]")
        voided = _book_by_hand(client, f"booked before, voided since [fee {voided_key}]")
        client.post(f"/ManualJournals/{voided['ManualJournalID']}",
                    json={"ManualJournals": [{"Status": "VOIDED"}]}).raise_for_status()
    assert [j["Status"] for j in journals(sandbox, f"fee {voided_key}")] == ["VOIDED"]
    materialize_stream(settings, "xero", "manual_journals")
    result = sync(settings, FEES)
    assert (result.created, result.linked, result.failed) == (len(planted["xero"]) - 2, 2, 0)
    assert [j["ManualJournalID"] for j in journals(sandbox, f"fee {posted_key}")] == [posted["ManualJournalID"]]
    assert [j["ManualJournalID"] for j in journals(sandbox, f"fee {voided_key}")] == [voided["ManualJournalID"]]
    ledger = dict(warehouse_rows(settings, "SELECT record_key, external_id FROM sync.ledger WHERE sync_name = ? "
                                           "AND status = 'linked'", [FEES]))
    assert ledger == {posted_key: posted["ManualJournalID"], voided_key: voided["ManualJournalID"]}


def test_writes_applied_then_failed_still_book_each_entry_once(settings, sandbox, monkeypatch):
    """Xero answers some journal writes with an error after storing them, cuts others, rate-limits more: the retried
    requests carry their Idempotency-Key, so Xero replays the first answer and no journal is booked twice. Fees go
    one journal a request (many requests, so every fault happens), refunds in the writer's batches."""
    planted = prepare(settings, sandbox)
    monkeypatch.setenv("XERO_MAX_RETRIES", "12")
    sandbox.set_faults("xero", apply_then_fail_rate=0.3, error_rate=0.1, rate_limit_rate=0.1, drop_rate=0.1,
                       retry_after=0, methods=["PUT"], seed=5)
    one_by_one = get_sync(FEES).model_copy(update={"batch_size": 1})
    fees = run_sync(one_by_one, Warehouse(settings.warehouse_database), settings, run_id="faults")
    refunds = sync(settings, REFUNDS)
    sandbox.clear_faults()
    faults = {r["fault"] for r in sandbox.state.request_log("xero") if r["path"].endswith("/ManualJournals")}
    assert {"apply_then_fail", "error", "rate_limit", "drop"} <= faults, faults
    assert (fees.created, fees.failed, refunds.created, refunds.failed) == (len(planted["xero"]), 0, 1, 0)
    assert_books(sandbox, planted)
