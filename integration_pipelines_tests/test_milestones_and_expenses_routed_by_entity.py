"""S5 and S7 acceptance: billing milestones and expense receipts land once each, in the books of the company they
belong to, read back through the books' own APIs (QuickBooks query API, Xero Invoices API on the emulators).

Expected values are written by hand from the sandbox world (seed 7, anchored 2026-03-10) as its systems record it.

S5, the PM tool's reached milestones (15): the client's country decides the issuing company.
- ms_5008 of prj_1004 "Umbrella Inc - ERP rollout", USD 27,500.00, client radia.shaw3@umbrella3.example.com (US)
  → the US company (QuickBooks). The US clients' reached milestones are ms_5008, ms_5019 and ms_5024.
- ms_5001 of prj_1001 "Hooli LLC - data platform", GBP 40,000.00, client Barbara Hamilton (GB) → the UK company
  (Xero); ms_5033 of prj_1012 "Aperture LLC - data platform", EUR 12,500.00, client grace.knuth11 (DE) → the German
  company (Xero). The twelve other milestones are UK and German clients'.

S7, the expense tool's 30 receipts, 17 of them approved or reimbursed: the employee's company decides the books.
- rcpt_10024, ken.perlman@acme-trading.com (the US company), meals, USD 54.38, spent 2026-03-09 → QuickBooks;
  rcpt_10001 (US, travel, USD 823.75) is still submitted and goes nowhere.
- rcpt_10002, linus.ritchie@acme-trading.co.uk (UK), office supplies, GBP 691.48, spent 2026-03-09 → Xero;
  rcpt_10013, radia.smith@acme-trading.de (DE), lodging, EUR 488.90, reimbursed, spent 2026-03-09 → Xero.
  rcpt_10005 (UK, GBP 215.36) was rejected and goes nowhere. 16 receipts are the UK and German staff's.
The accounts are the sandbox books' (seeds/books_accounts.csv): QuickBooks meals 13 paid from 35; Xero Office
Expenses 453 and Travel - National 493.
"""

from __future__ import annotations

import copy
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from integration_pipelines.assets.reconciliation import build_all_reconciliations
from integration_pipelines.warehouse import models
from integration_pipelines.warehouse.duckdb import Warehouse
from integration_pipelines.warehouse.models import ReportingConfigError

from .conftest import materialize_all_partitions, warehouse_rows
from .target_api import pm_tool_milestones, qbo_all, xero_get, xero_put
from .test_core_models import build
from .test_syncs import posts_to, sync

MILESTONE_SYNCS = ("milestones_to_quickbooks", "milestones_to_xero")
EXPENSE_SYNCS = ("expenses_to_quickbooks", "expenses_to_xero")


@pytest.fixture(autouse=True)
def _fast_targets(settings, monkeypatch):
    for prefix in ("QUICKBOOKS", "XERO", "PM_TOOL", "EXPENSE_TOOL"):
        monkeypatch.setenv(f"{prefix}_REQUESTS_PER_SECOND", "100")


def _extract_and_build(settings, *streams: tuple[str, str]) -> None:
    for system, stream in (*streams, ("quickbooks", "customers"), ("xero", "contacts")):
        materialize_all_partitions(settings, system, stream)
    build(settings)


def _run(settings, names: tuple[str, ...]) -> dict[str, tuple[int, int, int]]:
    results = {name: sync(settings, name) for name in names}
    return {name: (r.created, r.failed, r.plan.counts()["waiting"]) for name, r in results.items()}


def _milestone_invoices(url: str) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """Invoices numbered INV-M… in each books, by number."""
    qbo: dict[str, list[dict]] = {}
    for invoice in qbo_all(url, "Invoice"):
        if invoice.get("DocNumber", "").startswith("INV-M"):
            qbo.setdefault(invoice["DocNumber"], []).append(invoice)
    xero: dict[str, list[dict]] = {}
    for invoice in xero_get(url, "Invoices", where='Type=="ACCREC"'):
        if invoice["InvoiceNumber"].startswith("INV-M"):
            xero.setdefault(invoice["InvoiceNumber"], []).append(invoice)
    return qbo, xero


def test_each_reached_milestone_is_invoiced_once_in_its_clients_company_books(settings, sandbox, sandbox_server):
    _extract_and_build(settings, ("pm_tool", "billing_milestones"), ("pm_tool", "projects"))
    assert _run(settings, MILESTONE_SYNCS) == {"milestones_to_quickbooks": (3, 0, 0), "milestones_to_xero": (12, 0, 0)}

    url = sandbox_server.url
    qbo, xero = _milestone_invoices(url)
    assert sorted(qbo) == ["INV-M5008", "INV-M5019", "INV-M5024"]
    [us] = qbo["INV-M5008"]
    assert (us["TotalAmt"], us["CurrencyRef"]["value"]) == (27500.0, "USD")
    assert us["Line"][0]["Description"].startswith("Umbrella Inc - ERP rollout: Milestone")
    [us_customer] = [c for c in qbo_all(url, "Customer") if c["Id"] == us["CustomerRef"]["value"]]
    assert us_customer["PrimaryEmailAddr"]["Address"].lower() == "radia.shaw3@umbrella3.example.com"

    assert len(xero) == 12 and not set(xero) & set(qbo)
    [uk] = xero["INV-M5001"]
    assert (uk["Total"], uk["CurrencyCode"], uk["Status"]) == (40000.0, "GBP", "DRAFT")
    assert uk["Contact"]["Name"] == "Barbara Hamilton"
    [de] = xero["INV-M5033"]
    assert (de["Total"], de["CurrencyCode"], de["Status"]) == (12500.0, "EUR", "DRAFT")
    [de_in_full] = xero_get(url, f"Invoices/{de['InvoiceID']}")
    assert de_in_full["LineItems"][0]["AccountCode"] == "200"

    # a rerun, and one after the books are read again, send nothing
    _extract_and_build(settings, ("pm_tool", "billing_milestones"), ("pm_tool", "projects"))
    sandbox.state.clear_requests()
    assert _run(settings, MILESTONE_SYNCS) == dict.fromkeys(MILESTONE_SYNCS, (0, 0, 0))
    assert posts_to(sandbox, "quickbooks") == [] and posts_to(sandbox, "xero") == []


def _first_run_without_hamilton_in_xero(settings, sandbox) -> str:
    """The UK client Barbara Hamilton is not (yet) a contact in Xero when the milestones are first invoiced: her
    ms_5001 waits, the 14 others go to their books. Her email, for the bookkeeper to add her later."""
    xero_contacts = sandbox.emulator("xero").objects["contacts"]
    hamilton = next(k for k, c in xero_contacts.items() if c["Name"] == "Barbara Hamilton")
    email = xero_contacts.pop(hamilton)["EmailAddress"]
    _extract_and_build(settings, ("pm_tool", "billing_milestones"), ("pm_tool", "projects"))
    assert _run(settings, MILESTONE_SYNCS) == {"milestones_to_quickbooks": (3, 0, 0),
                                               "milestones_to_xero": (11, 0, 1)}
    return email


def test_a_milestone_whose_client_is_not_in_its_books_waits_then_is_invoiced_there(settings, sandbox,
                                                                                     sandbox_server):
    """A UK client missing from Xero is not invoiced in QuickBooks instead: the milestone waits for the contact."""
    email = _first_run_without_hamilton_in_xero(settings, sandbox)
    qbo, xero = _milestone_invoices(sandbox_server.url)
    assert "INV-M5001" not in qbo and "INV-M5001" not in xero

    # the UK bookkeeper adds the client in Xero; the next read finds her
    xero_put(sandbox_server.url, "Contacts", {"Name": "Barbara Hamilton", "EmailAddress": email})
    _extract_and_build(settings, ("pm_tool", "billing_milestones"), ("pm_tool", "projects"))
    assert _run(settings, MILESTONE_SYNCS) == {"milestones_to_quickbooks": (0, 0, 0),
                                               "milestones_to_xero": (1, 0, 0)}
    qbo, xero = _milestone_invoices(sandbox_server.url)
    assert "INV-M5001" not in qbo and len(xero["INV-M5001"]) == 1


def test_the_pm_tool_is_told_each_milestone_invoiced_and_only_those(settings, sandbox, sandbox_server):
    """After the books' runs, the PM tool shows each invoiced milestone `invoiced` under its number (what finance did
    by hand), read back through the PM tool's own API. The world: 15 milestones reached, 4 invoiced long ago
    (ms_5009 as INV-M5009...), 14 planned. UK client Barbara Hamilton is missing from Xero, so her ms_5001 waits:
    the PM tool must not hear of an invoice that does not exist."""
    email = _first_run_without_hamilton_in_xero(settings, sandbox)
    told = sync(settings, "invoiced_milestones_to_pm_tool")
    assert (told.updated, told.failed) == (14, 0)

    url = sandbox_server.url
    milestones = pm_tool_milestones(url)
    shown = {m["id"]: (m["status"], m["invoice_number"]) for m in milestones.values()}
    assert shown["ms_5008"] == ("invoiced", "INV-M5008")  # the US client's, invoiced in QuickBooks
    assert shown["ms_5033"] == ("invoiced", "INV-M5033")  # the German client's, a Xero draft
    assert shown["ms_5001"] == ("reached", None)  # waiting for its client in Xero
    assert shown["ms_5009"] == ("invoiced", "INV-M5009")  # invoiced by hand long ago, untouched
    assert Counter(status for status, _ in shown.values()) == {"invoiced": 18, "planned": 14, "reached": 1}

    # read again: the invoiced milestones have left the invoice syncs' source; nothing is sent anywhere
    _extract_and_build(settings, ("pm_tool", "billing_milestones"), ("pm_tool", "projects"))
    sandbox.state.clear_requests()
    assert _run(settings, MILESTONE_SYNCS) == {"milestones_to_quickbooks": (0, 0, 0),
                                               "milestones_to_xero": (0, 0, 1)}
    again = sync(settings, "invoiced_milestones_to_pm_tool")
    assert (again.updated, again.failed) == (0, 0)
    assert posts_to(sandbox, "quickbooks") == posts_to(sandbox, "xero") == posts_to(sandbox, "pm_tool") == []

    # the UK bookkeeper adds the client; her milestone is invoiced, and then the PM tool is told
    xero_put(url, "Contacts", {"Name": "Barbara Hamilton", "EmailAddress": email})
    _extract_and_build(settings, ("pm_tool", "billing_milestones"), ("pm_tool", "projects"))
    assert _run(settings, MILESTONE_SYNCS)["milestones_to_xero"] == (1, 0, 0)
    assert sync(settings, "invoiced_milestones_to_pm_tool").updated == 1
    assert (pm_tool_milestones(url)["ms_5001"]["status"], pm_tool_milestones(url)["ms_5001"]["invoice_number"]) == \
        ("invoiced", "INV-M5001")


def _expense_documents(url: str) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """QuickBooks purchases and Xero bills made from receipts, by receipt id."""
    qbo: dict[str, list[dict]] = {}
    for purchase in qbo_all(url, "Purchase"):
        note = purchase.get("PrivateNote") or ""
        if note.startswith("expense_tool receipt "):
            qbo.setdefault(note.split()[2], []).append(purchase)
    xero: dict[str, list[dict]] = {}
    for bill in xero_get(url, "Invoices", where='Type=="ACCPAY"'):
        if (bill.get("Reference") or "").startswith("expense_tool receipt "):
            xero.setdefault(bill["Reference"].split()[2], []).append(bill)
    return qbo, xero


def test_each_approved_receipt_is_booked_once_in_its_employees_company_books(settings, sandbox, sandbox_server):
    _extract_and_build(settings, ("expense_tool", "expense_receipts"))
    assert _run(settings, EXPENSE_SYNCS) == {"expenses_to_quickbooks": (1, 0, 0), "expenses_to_xero": (16, 0, 0)}

    url = sandbox_server.url
    qbo, xero = _expense_documents(url)
    assert list(qbo) == ["rcpt_10024"]
    [us] = qbo["rcpt_10024"]
    assert (us["TotalAmt"], us["TxnDate"], us["PaymentType"], us["AccountRef"]["value"]) == \
        (54.38, "2026-03-09", "Cash", "35")
    assert us["Line"][0]["AccountBasedExpenseLineDetail"]["AccountRef"]["value"] == "13"

    assert len(xero) == 16 and "rcpt_10005" not in xero and "rcpt_10001" not in xero
    [uk] = xero["rcpt_10002"]
    assert (uk["Total"], uk["CurrencyCode"], uk["Status"], uk["DateString"][:10], uk["Contact"]["Name"]) == \
        (691.48, "GBP", "AUTHORISED", "2026-03-09", "linus.ritchie@acme-trading.co.uk")
    [uk_in_full] = xero_get(url, f"Invoices/{uk['InvoiceID']}")
    assert uk_in_full["LineItems"][0]["AccountCode"] == "453"
    [de] = xero["rcpt_10013"]
    assert (de["Total"], de["CurrencyCode"], de["Status"]) == (488.9, "EUR", "AUTHORISED")
    [de_in_full] = xero_get(url, f"Invoices/{de['InvoiceID']}")
    assert de_in_full["LineItems"][0]["AccountCode"] == "493"

    _extract_and_build(settings, ("expense_tool", "expense_receipts"))
    sandbox.state.clear_requests()
    assert _run(settings, EXPENSE_SYNCS) == dict.fromkeys(EXPENSE_SYNCS, (0, 0, 0))
    assert posts_to(sandbox, "quickbooks") == [] and posts_to(sandbox, "xero") == []


def _unbookable(settings) -> list[tuple[str, str]]:
    """What the nightly reconciliation tells the bookkeeper about receipts S7 cannot book."""
    with Warehouse(settings.warehouse_database).connect() as con:
        build_all_reconciliations(con)
    return [(f, r) for f, r in warehouse_rows(
        settings, "SELECT finding, receipt_id FROM reconciliation.expenses_without_books ORDER BY receipt_id")]


def test_a_receipt_no_company_or_account_can_be_told_for_is_booked_nowhere_and_reported(settings, sandbox,
                                                                                       sandbox_server, tmp_path,
                                                                                       monkeypatch):
    """A contractor outside the group paying in Swiss francs, and a UK receipt of a category the books have no
    account for: neither lands anywhere (no catch-all account, no default company); both are reconciliation
    findings. The business maps the category in its own accounts file and the receipt is booked."""
    receipts = sandbox.emulator("expense_tool").objects["expense_receipts"]
    contractor = copy.deepcopy(receipts["rcpt_10002"])
    contractor.update(receipt_id="rcpt_20001", employee_email="sam@contractor.example.net", currency="CHF")
    golf = copy.deepcopy(receipts["rcpt_10002"])
    golf.update(receipt_id="rcpt_20002", category="golf_club_fees", amount_minor=12000)
    receipts.update({"rcpt_20001": contractor, "rcpt_20002": golf})
    _extract_and_build(settings, ("expense_tool", "expense_receipts"))
    assert _run(settings, EXPENSE_SYNCS) == {"expenses_to_quickbooks": (1, 0, 0), "expenses_to_xero": (16, 0, 1)}
    qbo, xero = _expense_documents(sandbox_server.url)
    assert not {"rcpt_20001", "rcpt_20002"} & (set(qbo) | set(xero))
    assert _unbookable(settings) == [("no_company", "rcpt_20001"), ("no_expense_account", "rcpt_20002")]

    shipped = Path(models.__file__).parent / "models" / "seeds" / "books_accounts.csv"
    accounts = tmp_path / "our_accounts.csv"
    accounts.write_text(shipped.read_text() + "xero,expense_category:golf_club_fees,420,Entertainment\n")
    monkeypatch.setenv("IP_BOOKS_ACCOUNTS_FILE", str(accounts))
    build(settings)
    assert _run(settings, EXPENSE_SYNCS) == {"expenses_to_quickbooks": (0, 0, 0), "expenses_to_xero": (1, 0, 0)}
    _, xero = _expense_documents(sandbox_server.url)
    [golf_bill] = xero["rcpt_20002"]
    assert (golf_bill["Total"], golf_bill["CurrencyCode"]) == (120.0, "GBP")
    [golf_in_full] = xero_get(sandbox_server.url, f"Invoices/{golf_bill['InvoiceID']}")
    assert golf_in_full["LineItems"][0]["AccountCode"] == "420"
    assert "rcpt_20001" not in xero
    assert _unbookable(settings) == [("no_company", "rcpt_20001")]


def test_a_books_accounts_file_without_a_code_stops_the_build_naming_the_file_and_line(settings, tmp_path,
                                                                                      monkeypatch):
    accounts = tmp_path / "our_accounts.csv"
    accounts.write_text("books_system,purpose,account_code\nxero,expense_category:travel,493\n"
                        "xero,expense_category:meals,\n")
    monkeypatch.setenv("IP_BOOKS_ACCOUNTS_FILE", str(accounts))
    with Warehouse(settings.warehouse_database).connect() as con, pytest.raises(ReportingConfigError) as raised:
        models.load_seeds(con)
    assert str(raised.value) == (f"{accounts}: line 3: books_system, purpose and account_code must all be "
                                 "filled in")


def _faults_on_both_books(sandbox, monkeypatch) -> None:
    for prefix in ("QUICKBOOKS", "XERO"):
        monkeypatch.setenv(f"{prefix}_MAX_RETRIES", "12")
    for system in ("quickbooks", "xero"):
        sandbox.set_faults(system, error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, retry_after=0,
                           methods=["POST", "PUT", "PATCH"], seed=3)


def test_faults_on_both_books_end_in_the_same_documents_once_each(settings, sandbox, sandbox_server, monkeypatch):
    """Errors, rate limits and answers lost after the write (20/10/10 %): every retry is a replay of its
    idempotency key, so each milestone and receipt is still booked exactly once; a dry run sends nothing."""
    _extract_and_build(settings, ("pm_tool", "billing_milestones"), ("pm_tool", "projects"),
                       ("expense_tool", "expense_receipts"))
    sandbox.state.clear_requests()
    dry = {name: sync(settings, name, dry_run=True).plan.counts()["creates"] for name in (*MILESTONE_SYNCS,
                                                                                         *EXPENSE_SYNCS)}
    assert dry == {"milestones_to_quickbooks": 3, "milestones_to_xero": 12, "expenses_to_quickbooks": 1,
                   "expenses_to_xero": 16}
    assert posts_to(sandbox, "quickbooks") == [] and posts_to(sandbox, "xero") == []

    _faults_on_both_books(sandbox, monkeypatch)
    results = _run(settings, (*MILESTONE_SYNCS, *EXPENSE_SYNCS))
    sandbox.clear_faults()
    assert any(r["fault"] for r in sandbox.state.request_log("quickbooks"))
    assert any(r["fault"] for r in sandbox.state.request_log("xero"))
    assert results == {"milestones_to_quickbooks": (3, 0, 0), "milestones_to_xero": (12, 0, 0),
                       "expenses_to_quickbooks": (1, 0, 0), "expenses_to_xero": (16, 0, 0)}
    qbo, xero = _milestone_invoices(sandbox_server.url)
    assert sorted(qbo) == ["INV-M5008", "INV-M5019", "INV-M5024"] and len(xero) == 12
    assert all(len(found) == 1 for found in (*qbo.values(), *xero.values()))
    qbo, xero = _expense_documents(sandbox_server.url)
    assert list(qbo) == ["rcpt_10024"] and len(xero) == 16
    assert all(len(found) == 1 for found in (*qbo.values(), *xero.values()))


def test_a_milestone_the_books_refuse_fails_alone_naming_the_field(settings, sandbox, sandbox_server):
    """A US milestone marked reached without an amount: QuickBooks refuses the line; the other milestones are
    invoiced and the refusal is in sync.errors with QuickBooks' words."""
    milestones = sandbox.emulator("pm_tool").objects["billing_milestones"]
    bad = copy.deepcopy(milestones["ms_5008"])
    bad.update(id="ms_9999", amount_minor=None)
    milestones["ms_9999"] = bad
    _extract_and_build(settings, ("pm_tool", "billing_milestones"), ("pm_tool", "projects"))
    assert _run(settings, MILESTONE_SYNCS) == {"milestones_to_quickbooks": (3, 1, 0), "milestones_to_xero": (12, 0, 0)}
    errors = warehouse_rows(settings, "SELECT sync_name, record_key, operation, message FROM sync.errors")
    assert [row[:3] for row in errors] == [("milestones_to_quickbooks", "ms_9999", "create")]
    assert "Line.Amount" in errors[0][3]
    qbo, _ = _milestone_invoices(sandbox_server.url)
    assert "INV-M9999" not in qbo


def test_a_books_accounts_file_without_a_fixed_account_stops_the_sync_before_anything_is_sent(
        settings, sandbox, tmp_path, monkeypatch):
    """The business's own file forgot the QuickBooks reimbursement account: the expense sync sends nothing and says
    which row to add and where; the Xero sync, whose accounts are all there, books as usual."""
    shipped = Path(models.__file__).parent / "models" / "seeds" / "books_accounts.csv"
    accounts = tmp_path / "our_accounts.csv"
    accounts.write_text("".join(line for line in shipped.read_text().splitlines(keepends=True)
                                if "expense_paid_from" not in line))
    monkeypatch.setenv("IP_BOOKS_ACCOUNTS_FILE", str(accounts))
    _extract_and_build(settings, ("expense_tool", "expense_receipts"))
    sandbox.state.clear_requests()
    with pytest.raises(duckdb.InvalidInputException) as raised:
        sync(settings, "expenses_to_quickbooks")
    assert ("ref.books_accounts has no account for books_system=quickbooks, purpose=expense_paid_from: add the row "
            "to seeds/books_accounts.csv or to your own file in IP_BOOKS_ACCOUNTS_FILE") in str(raised.value)
    assert posts_to(sandbox, "quickbooks") == []
    assert _run(settings, ("expenses_to_xero",)) == {"expenses_to_xero": (16, 0, 0)}


def _payments_on(url: str, bill_id: str) -> list[dict]:
    """The payments Xero lists on one bill (its Payments API)."""
    return [p for p in xero_get(url, "Payments") if p["Invoice"]["InvoiceID"] == bill_id and p["Status"] != "DELETED"]


def _xero_day(dotnet_date: str) -> str:
    return datetime.fromtimestamp(int(dotnet_date[6:-7]) / 1000, UTC).date().isoformat()


def test_a_reimbursed_receipts_bill_is_paid_once_on_the_day_the_employee_was_paid_back(settings, sandbox,
                                                                                       sandbox_server):
    """The expense tool records three UK/German receipts reimbursed (the world's facts, by hand):
    - rcpt_10013, radia.smith@acme-trading.de, EUR 488.90, paid back 2026-03-09;
    - rcpt_10022, linus.wilson@acme-trading.co.uk, software, GBP 616.77, paid back 2026-03-07;
    - rcpt_10026, frances.liskov@acme-trading.de, travel, EUR 547.56, paid back 2026-03-08: the German bookkeeper
      had already recorded that transfer on the bill in Xero, by hand.
    Each bill ends PAID with exactly one payment from the Business Bank Account (090); the approved receipts not yet
    reimbursed stay owed to the employee; no bill payment is counted as a customer's payment."""
    _extract_and_build(settings, ("expense_tool", "expense_receipts"))
    assert _run(settings, ("expenses_to_xero",)) == {"expenses_to_xero": (16, 0, 0)}
    url = sandbox_server.url
    _, bills = _expense_documents(url)
    by_hand = xero_put(url, "Payments", {"Invoice": {"InvoiceID": bills["rcpt_10026"][0]["InvoiceID"]},
                                         "Account": {"Code": "090"}, "Date": "2026-03-08", "Amount": 547.56,
                                         "Reference": "transfer to F. Liskov"})
    _extract_and_build(settings, ("xero", "invoices"), ("xero", "payments"))

    result = sync(settings, "expense_reimbursements_to_xero")
    assert (result.created, result.linked, result.failed) == (2, 1, 0)

    _, bills = _expense_documents(url)
    for receipt, amount, day in (("rcpt_10013", 488.9, "2026-03-09"), ("rcpt_10022", 616.77, "2026-03-07")):
        [bill] = xero_get(url, f"Invoices/{bills[receipt][0]['InvoiceID']}")
        assert (bill["Status"], bill["AmountDue"], bill["AmountPaid"]) == ("PAID", 0.0, amount), receipt
        [payment] = _payments_on(url, bill["InvoiceID"])
        assert (payment["Amount"], _xero_day(payment["Date"]), payment["Account"]["Code"], payment["PaymentType"]) \
            == (amount, day, "090", "ACCPAYPAYMENT"), receipt
    [paid_by_hand] = _payments_on(url, bills["rcpt_10026"][0]["InvoiceID"])
    assert paid_by_hand["PaymentID"] == by_hand["PaymentID"]
    [still_owed] = xero_get(url, f"Invoices/{bills['rcpt_10002'][0]['InvoiceID']}")
    assert (still_owed["Status"], still_owed["AmountDue"], _payments_on(url, still_owed["InvoiceID"])) == \
        ("AUTHORISED", 691.48, [])

    _extract_and_build(settings, ("expense_tool", "expense_receipts"), ("xero", "invoices"), ("xero", "payments"))
    assert warehouse_rows(settings, "SELECT count(*) FROM core.payments WHERE source_system = 'xero' "
                                    "AND invoice_number LIKE 'rcpt_%'") == [(0,)]
    sandbox.state.clear_requests()
    again = sync(settings, "expense_reimbursements_to_xero")
    assert (again.created, again.linked, again.failed) == (0, 0, 0) and posts_to(sandbox, "xero") == []
