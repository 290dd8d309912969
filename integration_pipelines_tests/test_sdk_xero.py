"""xero-python (the official SDK) against the Xero emulator's Manual Journals API, over real HTTP: create (PUT) with
an Idempotency-Key and its replay, list (paged, with journal lines; `where`; `If-Modified-Since`), get one, update
(POST: post a draft, void a posted journal), and Xero's refusals in its `ValidationException` shape: lines that do
not balance, a bank account on a journal, an account the chart does not have. Invoices: one read by id and by
number (`where`), an unknown id as the SDK's NotFoundException, a refused token as its 401 ApiException.

Expected values are written by hand from Xero's Manual Journals reference (debits positive, credits negative, lines
balancing to zero; no bank accounts: help.xero.com "You can't post a manual journal to a bank account in Xero") and
the sandbox organisation's chart (090 is its bank account, 404 Bank Fees, 615 the group's card processor clearing).
"""

from __future__ import annotations

import json
from datetime import date, datetime

import httpx
import pytest

from integration_pipelines.connectors.xero import API_ROOT, SYSTEM
from integration_pipelines.sandbox.xero import TOKEN_PATH

pytest.importorskip("xero_python")
from xero_python.accounting import AccountingApi
from xero_python.accounting.models import LineAmountTypes, ManualJournal, ManualJournalLine, ManualJournals
from xero_python.api_client import ApiClient, Configuration
from xero_python.api_client.oauth2 import OAuth2Token, TokenApi
from xero_python.exceptions import AccountingBadRequestException

CLIENT_ID = SYSTEM.values["client_id"].sandbox
CLIENT_SECRET = SYSTEM.values["client_secret"].sandbox
TENANT = SYSTEM.values["tenant_id"].sandbox


@pytest.fixture
def api(sandbox_server, sandbox, monkeypatch) -> AccountingApi:
    monkeypatch.setattr(TokenApi, "refresh_token_url", sandbox_server.url + TOKEN_PATH)
    stored = {"access_token": "expired", "refresh_token": SYSTEM.values["refresh_token"].sandbox,
              "scope": ["accounting.transactions"], "expires_in": 1800, "expires_at": 0.0, "token_type": "Bearer"}
    client = ApiClient(Configuration(oauth2_token=OAuth2Token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)),
                       pool_threads=1, oauth2_token_getter=lambda: stored, oauth2_token_saver=stored.update)
    return AccountingApi(client, base_url=sandbox_server.url + API_ROOT)


def fee_journal(fee: float, *, narration: str = "Stripe fee on ch_sdk_1", status: str = "POSTED",
                credit: float | None = None, credit_account: str = "615") -> ManualJournal:
    return ManualJournal(narration=narration, date=date(2026, 3, 8), status=status,
                         line_amount_types=LineAmountTypes.NOTAX, journal_lines=[
                             ManualJournalLine(line_amount=fee, account_code="404", description="card fee",
                                               tax_type="NONE"),
                             ManualJournalLine(line_amount=-fee if credit is None else credit,
                                               account_code=credit_account, description="kept from the payout",
                                               tax_type="NONE")])


def refusal(caught: pytest.ExceptionInfo) -> tuple[str, list[str]]:
    body = json.loads(caught.value.body)
    return body["Type"], [e["Message"] for element in body["Elements"] for e in element["ValidationErrors"]]


def test_create_replay_list_and_get_manual_journals(api, sandbox):
    books = sandbox.emulator("xero")
    before = len(books.dump("manual_journals"))
    made = api.create_manual_journals(TENANT, ManualJournals(manual_journals=[fee_journal(1.70)]),
                                      idempotency_key="sdk-journal-1").manual_journals[0]
    again = api.create_manual_journals(TENANT, ManualJournals(manual_journals=[fee_journal(1.70)]),
                                       idempotency_key="sdk-journal-1").manual_journals[0]
    assert made.manual_journal_id == again.manual_journal_id
    assert len(books.dump("manual_journals")) == before + 1, "the replayed key created nothing"
    assert (made.narration, str(made.status), made.date) == ("Stripe fee on ch_sdk_1", "POSTED", date(2026, 3, 8))
    assert made.line_amount_types == LineAmountTypes.NOTAX and made.show_on_cash_basis_reports is True
    assert [(line.account_code, float(line.line_amount)) for line in made.journal_lines] == [("404", 1.70),
                                                                                             ("615", -1.70)]

    listed = api.get_manual_journals(TENANT, page=1).manual_journals
    assert len(listed) == before + 1 and all(j.journal_lines for j in listed), "a paged list has journal lines"
    posted = api.get_manual_journals(TENANT, where='Status=="POSTED" AND Narration.Contains("ch_sdk_1")')
    assert [j.manual_journal_id for j in posted.manual_journals] == [made.manual_journal_id]
    # the seeded journals were last changed in the world's days (before its anchor, 2026-03-10); the new one now
    since = datetime(2026, 3, 10)  # naive UTC, as the SDK documents it
    changed = api.get_manual_journals(TENANT, if_modified_since=since, page=1).manual_journals
    assert [j.manual_journal_id for j in changed] == [made.manual_journal_id]
    [one] = api.get_manual_journal(TENANT, made.manual_journal_id).manual_journals
    assert one.narration == made.narration and [float(line.line_amount) for line in one.journal_lines] == [1.70,
                                                                                                           -1.70]


def test_a_draft_is_posted_then_voided(api, sandbox):
    draft = api.create_manual_journals(TENANT, ManualJournals(manual_journals=[
        fee_journal(2.05, narration="Square fee, for review", status="DRAFT")])).manual_journals[0]
    assert str(draft.status) == "DRAFT"

    def update(status: str) -> ManualJournal:  # the SDK's model always carries the narration
        return api.update_manual_journal(TENANT, draft.manual_journal_id, ManualJournals(manual_journals=[
            ManualJournal(narration="Square fee, checked", status=status)])).manual_journals[0]

    posted = update("POSTED")
    assert str(posted.status) == "POSTED" and posted.narration == "Square fee, checked"
    assert [float(line.line_amount) for line in posted.journal_lines] == [2.05, -2.05], "lines not sent are kept"
    assert str(update("VOIDED").status) == "VOIDED"
    with pytest.raises(AccountingBadRequestException) as closed:
        update("POSTED")
    assert refusal(closed) == ("ValidationException", ["Manual journal not of valid status for modification"])


def test_xero_refuses_what_a_bookkeeper_could_not_post(api, sandbox):
    books = sandbox.emulator("xero")
    before = books.dump("manual_journals")
    with pytest.raises(AccountingBadRequestException) as unbalanced:
        api.create_manual_journals(TENANT, ManualJournals(manual_journals=[fee_journal(100.0, credit=-90.0)]))
    assert refusal(unbalanced) == ("ValidationException", ["The total debits (100.00) must equal total credits "
                                                           "(90.00)"])
    with pytest.raises(AccountingBadRequestException) as bank:
        api.create_manual_journals(TENANT, ManualJournals(manual_journals=[fee_journal(1.70, credit_account="090")]))
    assert refusal(bank) == ("ValidationException", ["Account code '090' is not a valid code for this document."])
    with pytest.raises(AccountingBadRequestException) as unknown:
        api.create_manual_journals(TENANT, ManualJournals(manual_journals=[fee_journal(1.70, credit_account="999")]))
    assert refusal(unknown) == ("ValidationException", ["Account code '999' is not a valid code for this document."])
    assert books.dump("manual_journals") == before, "nothing refused was saved"


def test_a_list_without_paging_is_a_summary_without_journal_lines(sandbox_server, sandbox):
    token = httpx.post(sandbox_server.url + TOKEN_PATH, auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "refresh_token", "refresh_token": SYSTEM.values["refresh_token"].sandbox}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "xero-tenant-id": TENANT, "Accept": "application/json"}
    journals = f"{sandbox_server.url}{API_ROOT}/ManualJournals"
    summary = httpx.get(journals, headers=headers).json()
    assert "pagination" not in summary and summary["ManualJournals"]
    assert not any("JournalLines" in j for j in summary["ManualJournals"])
    paged = httpx.get(journals, headers=headers, params={"page": 1, "pageSize": 4}).json()
    assert paged["pagination"] == {"page": 1, "pageSize": 4, "pageCount": 2, "itemCount": 6}
    assert all(len(j["JournalLines"]) == 2 for j in paged["ManualJournals"])
    # the seeded books: the bookkeeper's own journals, one voided duplicate and one draft, each balanced
    statuses = sorted(j["Status"] for j in summary["ManualJournals"])
    assert statuses == ["DRAFT", "POSTED", "POSTED", "POSTED", "POSTED", "VOIDED"]


UK_INVOICE_ID = "a9ab7e7a-4a24-4473-81f5-ab70741b19cb"  # the world's INV-1039: Tim Turing, GBP 319.50, AUTHORISED


def test_an_invoice_is_read_by_id_and_by_number(api):
    one = api.get_invoice(TENANT, UK_INVOICE_ID).invoices[0]
    assert (one.invoice_number, str(one.status), one.currency_code.value, float(one.total), float(one.amount_due)) \
        == ("INV-1039", "AUTHORISED", "GBP", 319.5, 319.5)
    assert one.line_items, "one invoice in full carries its lines"
    found = api.get_invoices(TENANT, where='InvoiceNumber=="INV-1039"').invoices
    assert [i.invoice_id for i in found] == [one.invoice_id]
    listed = api.get_invoices(TENANT, invoice_numbers=["INV-1039"]).invoices  # Xero's InvoiceNumbers filter
    assert [i.invoice_id for i in listed] == [one.invoice_id]


def test_not_found_and_a_refused_token_are_the_sdks_own_exceptions(api, sandbox_server):
    from xero_python.exceptions import ApiException, NotFoundException

    with pytest.raises(NotFoundException) as missing:
        api.get_invoice(TENANT, "00000000-0000-4000-8000-000000000000")
    assert missing.value.status == 404

    stored = {"access_token": "FAKE-not-a-token", "refresh_token": "FAKE", "scope": ["accounting.transactions"],
              "expires_in": 1800, "expires_at": 4102444800.0, "token_type": "Bearer"}  # not expired: sent as is
    client = ApiClient(Configuration(oauth2_token=OAuth2Token(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)),
                       pool_threads=1, oauth2_token_getter=lambda: stored, oauth2_token_saver=stored.update)
    with pytest.raises(ApiException) as refused:
        AccountingApi(client, base_url=sandbox_server.url + API_ROOT).get_invoice(TENANT, UK_INVOICE_ID)
    assert refused.value.status == 401
