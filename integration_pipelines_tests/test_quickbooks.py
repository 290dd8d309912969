"""QuickBooks Online end to end: the sandbox over real HTTP → extract assets → DuckDB, the OAuth2 refresh flow,
QBO's query language and faults, idempotent writes, and python-quickbooks as an independent judge."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from integration_pipelines.connectors.errors import ApiError
from integration_pipelines.connectors.quickbooks import SYSTEM
from integration_pipelines.connectors.runtime import build_client, resolve_system
from integration_pipelines.connectors.writer import send_write
from integration_pipelines.extraction import extract_stream
from integration_pipelines.sandbox.quickbooks import TOKEN_PATH
from integration_pipelines.warehouse.duckdb import Warehouse

from .conftest import loaded_keys, materialize_stream, warehouse_rows

# the entity reads; the ChangeDataCapture streams (`*_changes`) report the last 30 days of changes, which the seeded
# world (anchored in March 2026) has none of: test_books_edited_by_hand.py makes some and reads them
STREAMS = [s.name for s in SYSTEM.streams if not s.name.endswith("_changes")]
REALM = SYSTEM.values["realm_id"].sandbox
CLIENT_ID = SYSTEM.values["client_id"].sandbox
CLIENT_SECRET = SYSTEM.values["client_secret"].sandbox
REFRESH_TOKEN = SYSTEM.values["refresh_token"].sandbox
SECRETS = (CLIENT_SECRET, REFRESH_TOKEN)


def _ids(sandbox, stream: str) -> list[str]:
    return sorted(o["Id"] for o in sandbox.emulator("quickbooks").dump(stream))


def _metadata(result, stream: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(f"quickbooks__{stream}")[0].metadata.items()}


def _failure_text(result) -> str:
    assert not result.success
    return result.get_step_failure_events()[0].event_specific_data.error.to_string()


def _queries(sandbox) -> list[str]:
    """The SQL of every query the connector sent, in order."""
    return [parse_qs(r["query"])["query"][0] for r in sandbox.state.request_log("quickbooks")
            if r["path"].endswith("/query") and "query=" in r["query"]]


def _token_requests(sandbox) -> list[dict]:
    return [r for r in sandbox.state.request_log("quickbooks") if r["path"] == TOKEN_PATH]


def _access_token(url: str) -> str:
    response = httpx.post(url + TOKEN_PATH, auth=(CLIENT_ID, CLIENT_SECRET),
                          data={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN})
    response.raise_for_status()
    return response.json()["access_token"]


# -- reading -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", STREAMS)
def test_full_extract_lands_exactly_the_sandbox_ids(settings, sandbox, monkeypatch, stream):
    monkeypatch.setenv("QUICKBOOKS_PAGE_SIZE", "7")
    truth = _ids(sandbox, stream)
    assert len(truth) > 14, "the seeded books must need several pages"
    metadata = _metadata(materialize_stream(settings, "quickbooks", stream), stream)
    assert loaded_keys(settings, "quickbooks", stream) == truth
    assert metadata["pages"] >= len(truth) // 7 and metadata["inserted"] == len(truth)
    assert metadata["mode"] == "sandbox" and metadata["incremental_since"] == "full read"

    raw, cursor, source = warehouse_rows(
        settings, f"SELECT _raw, _cursor, _source_system FROM raw_quickbooks.{stream} ORDER BY _pk LIMIT 1")[0]
    record = json.loads(raw)
    assert record["MetaData"]["LastUpdatedTime"] == cursor and source == "quickbooks"
    assert datetime.fromisoformat(cursor).utcoffset() is not None, "Intuit sends local times with an offset"
    # one GET per page, STARTPOSITION stepping by the page size, the cursor at the epoch on a first read
    sent = _queries(sandbox)
    assert [q.split("STARTPOSITION ")[1].split()[0] for q in sent] == [str(1 + 7 * n) for n in range(len(sent))]
    assert all("MetaData.LastUpdatedTime >= '1970-01-01T00:00:00+00:00'" in q and "MAXRESULTS 7" in q for q in sent)


def test_rerun_is_a_no_op_and_touched_invoices_are_read_incrementally(settings, sandbox, monkeypatch):
    monkeypatch.setenv("QUICKBOOKS_PAGE_SIZE", "7")
    materialize_stream(settings, "quickbooks", "invoices")
    before = warehouse_rows(settings, "SELECT _pk, _raw, _run_id FROM raw_quickbooks.invoices ORDER BY _pk")
    sandbox.state.clear_requests()

    rerun = _metadata(materialize_stream(settings, "quickbooks", "invoices"), "invoices")
    assert rerun["inserted"] == 0 and rerun["updated"] == 0
    assert rerun["incremental_since"] != "full read"
    assert warehouse_rows(settings, "SELECT _pk, _raw, _run_id FROM raw_quickbooks.invoices ORDER BY _pk") == before
    # the incremental query asks only for what changed since the stored cursor minus the 5-minute lookback
    # (many invoices were paid in the world's last second, so that is still a few pages)
    cursor = datetime.fromisoformat(rerun["incremental_since"])
    since = (cursor - timedelta(seconds=300)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    assert all(f"MetaData.LastUpdatedTime >= '{since}'" in q for q in _queries(sandbox))
    assert 0 < rerun["records_read"] < len(before)

    touched = sandbox.emulator("quickbooks").touch("invoices", 4)
    sandbox.state.clear_requests()
    after = _metadata(materialize_stream(settings, "quickbooks", "invoices"), "invoices")
    assert after["updated"] == 4 and after["inserted"] == 0
    assert all(f"MetaData.LastUpdatedTime >= '{since}'" in q for q in _queries(sandbox))
    memos = dict(warehouse_rows(
        settings, "SELECT _pk, json_extract_string(_raw, '$.CustomerMemo.value') FROM raw_quickbooks.invoices"))
    assert sorted(k for k, memo in memos.items() if memo) == sorted(touched)
    assert loaded_keys(settings, "quickbooks", "invoices") == _ids(sandbox, "invoices")


def test_a_deactivated_customer_is_still_read(settings, sandbox):
    """QBO hides inactive customers from queries unless asked; the stream asks, so a 'deleted' one updates."""
    materialize_stream(settings, "quickbooks", "customers")
    customer = sandbox.emulator("quickbooks").dump("customers")[0]
    with build_client(resolve_system(SYSTEM, settings)) as client:
        result = send_write(client, resolve_system(SYSTEM, settings), SYSTEM.writer("save_customer"),
                            [{"Id": customer["Id"], "SyncToken": customer["SyncToken"], "sparse": True,
                              "Active": False}], idempotency_key=f"deactivate-{customer['Id']}")
    assert result.external_ids == [customer["Id"]] and result.body["Customer"]["Active"] is False

    after = _metadata(materialize_stream(settings, "quickbooks", "customers"), "customers")
    assert after["updated"] == 1 and after["inserted"] == 0
    [(active,)] = warehouse_rows(settings, "SELECT json_extract(_raw, '$.Active')::BOOLEAN FROM "
                                 "raw_quickbooks.customers WHERE _pk = ?", [customer["Id"]])
    assert active is False
    assert loaded_keys(settings, "quickbooks", "customers") == _ids(sandbox, "customers")


def test_records_edited_while_paging_are_neither_skipped_nor_duplicated(settings, sandbox, monkeypatch):
    """Pages are ordered by Id: an edit mid-read cannot shift unread rows behind the offset."""
    monkeypatch.setenv("QUICKBOOKS_PAGE_SIZE", "7")
    emulator = sandbox.emulator("quickbooks")

    class EditAfterSecondPage(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = super().handle_request(request)
            if "STARTPOSITION+8+" in str(request.url):
                emulator.touch("customers", 5)  # rows already read move to "now"
            return response

    resolved = resolve_system(SYSTEM, settings)
    result = extract_stream(resolved=resolved, stream=SYSTEM.stream("customers"),
                            warehouse=Warehouse(settings.warehouse_database), settings=settings,
                            run_id=uuid.uuid4().hex, client_kwargs={"transport": EditAfterSecondPage()})
    assert result.pages > 2
    assert [c["SyncToken"] for c in emulator.dump("customers")][:6] == ["1"] * 5 + ["0"], "edited mid-read"
    assert loaded_keys(settings, "quickbooks", "customers") == _ids(sandbox, "customers")


# -- OAuth2 ----------------------------------------------------------------------------------------------
def test_one_token_request_per_run(settings, sandbox, monkeypatch):
    monkeypatch.setenv("QUICKBOOKS_PAGE_SIZE", "7")
    materialize_stream(settings, "quickbooks", "payments")
    log = sandbox.state.request_log("quickbooks")
    assert len(_token_requests(sandbox)) == 1
    assert len([r for r in log if r["path"].endswith("/query")]) > 3
    assert all(r["status"] == 200 for r in log)


def test_access_token_expiring_mid_run_is_refreshed_once(settings, sandbox, monkeypatch):
    monkeypatch.setenv("QUICKBOOKS_PAGE_SIZE", "7")
    sandbox.emulator("quickbooks").expire_access_tokens(after_requests=2)
    materialize_stream(settings, "quickbooks", "customers")
    assert loaded_keys(settings, "quickbooks", "customers") == _ids(sandbox, "customers")
    statuses = [r["status"] for r in sandbox.state.request_log("quickbooks") if r["path"].endswith("/query")]
    assert statuses.count(401) == 1 and statuses[2] == 401
    assert len(_token_requests(sandbox)) == 2


def test_revoked_refresh_token_fails_naming_the_variable_without_secrets(settings, sandbox, sandbox_server):
    # the user disconnects the app in QuickBooks: Intuit revokes the grant
    revoked = httpx.post(sandbox_server.url + "/v2/oauth2/tokens/revoke", auth=(CLIENT_ID, CLIENT_SECRET),
                         json={"token": REFRESH_TOKEN})
    assert revoked.status_code == 200
    result = materialize_stream(settings, "quickbooks", "customers", raise_on_error=False)
    text = _failure_text(result)
    assert "QUICKBOOKS_REFRESH_TOKEN" in text and "invalid_grant" in text
    assert not any(secret in text for secret in SECRETS)
    assert [r["status"] for r in _token_requests(sandbox)] == [400], "a refused grant is not retried"


def test_grant_revoked_mid_run_fails_after_one_refresh_and_commits_nothing(settings, sandbox, monkeypatch):
    """The user disconnects the app while a read is paging: the access token dies with the grant, the engine
    refreshes once, is refused, and the run fails with a message that says what to fix."""
    monkeypatch.setenv("QUICKBOOKS_PAGE_SIZE", "7")
    emulator = sandbox.emulator("quickbooks")
    emulator.after_requests(3, emulator.revoke)
    text = _failure_text(materialize_stream(settings, "quickbooks", "customers", raise_on_error=False))
    assert "QUICKBOOKS_REFRESH_TOKEN" in text and "invalid_grant" in text
    assert not any(secret in text for secret in SECRETS)
    assert [r["status"] for r in _token_requests(sandbox)] == [200, 400]
    statuses = [r["status"] for r in sandbox.state.request_log("quickbooks") if r["path"].endswith("/query")]
    assert statuses == [200, 200, 200, 401]
    assert not Path(settings.warehouse_database).exists(), "a failed read never opens the warehouse"


def test_wrong_client_secret_names_the_variables_and_hides_the_secret(settings, sandbox, monkeypatch):
    wrong = "FAKEwrongClientSecret0123456789"
    monkeypatch.setenv("QUICKBOOKS_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("QUICKBOOKS_CLIENT_SECRET", wrong)
    monkeypatch.setenv("QUICKBOOKS_REFRESH_TOKEN", REFRESH_TOKEN)
    monkeypatch.setenv("QUICKBOOKS_REALM_ID", REALM)  # live mode takes nothing from the sandbox's defaults
    monkeypatch.setenv("QUICKBOOKS_BASE_URL", settings.sandbox_url)
    monkeypatch.setenv("QUICKBOOKS_TOKEN_URL", settings.sandbox_url + TOKEN_PATH)
    text = _failure_text(materialize_stream(settings, "quickbooks", "customers", raise_on_error=False))
    assert "invalid_client" in text and "QUICKBOOKS_CLIENT_SECRET" in text
    assert wrong not in text and REFRESH_TOKEN not in text


def test_wrong_realm_is_refused_with_intuits_authorization_fault(settings, sandbox, monkeypatch):
    monkeypatch.setenv("QUICKBOOKS_REALM_ID", "1234567890")
    text = _failure_text(materialize_stream(settings, "quickbooks", "customers", raise_on_error=False))
    assert "403" in text and "AuthorizationFailed" in text


# -- faults ----------------------------------------------------------------------------------------------
def test_query_faults_surface_qbo_message_and_detail_and_commit_nothing(settings, sandbox, monkeypatch):
    materialize_stream(settings, "quickbooks", "invoices")
    before = warehouse_rows(settings, "SELECT _pk, _raw FROM raw_quickbooks.invoices ORDER BY _pk")
    emulator = sandbox.emulator("quickbooks")
    emulator.touch("invoices", 3)

    # a Fault inside an HTTP 200, as QBO sends when it cannot run a query
    emulator.queue_query_answer(200, {"Fault": {"Error": [{
        "Message": "An application error has occurred while processing your request",
        "Detail": "System Failure Error: java.lang.NullPointerException", "code": "10000"}],
        "type": "SystemFault"}, "time": "2026-03-10T01:00:00.000-08:00"})
    text = _failure_text(materialize_stream(settings, "quickbooks", "invoices", raise_on_error=False))
    assert "quickbooks/invoices" in text and "System Failure Error: java.lang.NullPointerException" in text
    assert "An application error has occurred" in text

    # a page without its QueryResponse envelope is malformed, not "no rows"
    emulator.queue_query_answer(200, {"time": "2026-03-10T01:00:00.000-08:00"})
    text = _failure_text(materialize_stream(settings, "quickbooks", "invoices", raise_on_error=False))
    assert "'QueryResponse'" in text and "envelope" in text

    # a query QBO refuses (MAXRESULTS over 1000): 400 ValidationFault, Detail in the message, no retry
    monkeypatch.setenv("QUICKBOOKS_PAGE_SIZE", "1001")
    sandbox.state.clear_requests()
    text = _failure_text(materialize_stream(settings, "quickbooks", "invoices", raise_on_error=False))
    assert "400" in text and "QueryParserError: MAXRESULTS must be between 1 and 1000" in text
    assert len(_queries(sandbox)) == 1
    assert not any(secret in text for secret in SECRETS)

    assert warehouse_rows(settings, "SELECT _pk, _raw FROM raw_quickbooks.invoices ORDER BY _pk") == before


def test_twenty_percent_faults_still_land_exactly(settings, sandbox, monkeypatch):
    monkeypatch.setenv("QUICKBOOKS_PAGE_SIZE", "5")
    monkeypatch.setenv("QUICKBOOKS_MAX_RETRIES", "12")
    sandbox.set_faults("quickbooks", error_rate=0.08, rate_limit_rate=0.07, drop_rate=0.05, retry_after=0, seed=11)
    for stream in STREAMS:
        materialize_stream(settings, "quickbooks", stream)
        assert loaded_keys(settings, "quickbooks", stream) == _ids(sandbox, stream)
    faults = [r for r in sandbox.state.request_log("quickbooks") if r["fault"]]
    assert len(faults) >= 5, "the fault injector must actually have fired"


# -- writing ---------------------------------------------------------------------------------------------
def _invoice_body(customer_id: str, amount: float = 120.0) -> dict:
    return {"CustomerRef": {"value": customer_id}, "DocNumber": "SYNC-0001",
            "Line": [{"Amount": amount, "DetailType": "SalesItemLineDetail",
                      "SalesItemLineDetail": {"ItemRef": {"value": "4"}, "Qty": 1, "UnitPrice": amount}}]}


def test_same_requestid_creates_one_invoice(settings, sandbox):
    emulator = sandbox.emulator("quickbooks")
    before = len(emulator.dump("invoices"))
    resolved = resolve_system(SYSTEM, settings)
    path = f"/v3/company/{resolved.values['realm_id']}/invoice"
    params = {"requestid": "sync-invoice-42", "minorversion": "75"}
    with build_client(resolved) as client:
        first = client.request("POST", path, params=params, json=_invoice_body("3")).json()["Invoice"]
        second = client.request("POST", path, params=params, json=_invoice_body("3")).json()["Invoice"]
        assert first == second
        created = [i for i in emulator.dump("invoices") if i["DocNumber"] == "SYNC-0001"]
        assert len(emulator.dump("invoices")) == before + 1 and [i["Id"] for i in created] == [first["Id"]]
        assert created[0]["TotalAmt"] == created[0]["Balance"] == 120.0
        assert created[0]["CustomerRef"]["name"] == emulator.dump("customers")[2]["DisplayName"]

        # a different requestid with the same DocNumber is a second invoice: QBO refuses the duplicate number
        with pytest.raises(ApiError, match="Duplicate Document Number"):
            client.request("POST", path, params={**params, "requestid": "sync-invoice-43"}, json=_invoice_body("3"))


def test_updates_need_the_current_sync_token_and_payments_settle_invoices(settings, sandbox):
    emulator = sandbox.emulator("quickbooks")
    resolved = resolve_system(SYSTEM, settings)
    open_invoice = next(i for i in emulator.dump("invoices") if i["Balance"] > 0)
    customer_id = open_invoice["CustomerRef"]["value"]
    with build_client(resolved) as client:
        save_invoice, save_payment = SYSTEM.writer("save_invoice"), SYSTEM.writer("save_payment")
        sparse = {"Id": open_invoice["Id"], "SyncToken": open_invoice["SyncToken"], "sparse": True,
                  "PrivateNote": "checked"}
        updated = send_write(client, resolved, save_invoice, [sparse]).body["Invoice"]
        assert updated["SyncToken"] == str(int(open_invoice["SyncToken"]) + 1)
        assert updated["PrivateNote"] == "checked" and updated["Line"] == open_invoice["Line"]

        with pytest.raises(ApiError, match="Stale Object Error"):
            send_write(client, resolved, save_invoice, [sparse])  # the old SyncToken again

        payment = {"CustomerRef": {"value": customer_id}, "TotalAmt": open_invoice["Balance"],
                   "Line": [{"Amount": open_invoice["Balance"],
                             "LinkedTxn": [{"TxnId": open_invoice["Id"], "TxnType": "Invoice"}]}]}
        paid = send_write(client, resolved, save_payment, [payment], idempotency_key="pay-1")
        again = send_write(client, resolved, save_payment, [payment], idempotency_key="pay-1")
        assert paid.external_ids == again.external_ids
    settled = next(i for i in emulator.dump("invoices") if i["Id"] == open_invoice["Id"])
    assert settled["Balance"] == 0 and {"TxnId": paid.external_ids[0], "TxnType": "Payment"} in settled["LinkedTxn"]
    assert len([p for p in emulator.dump("payments") if p["Id"] == paid.external_ids[0]]) == 1


# -- the sandbox's protocol and books --------------------------------------------------------------------
def test_query_protocol_matches_qbo(sandbox_server, sandbox):
    url, headers = sandbox_server.url, {"Accept": "application/json"}
    headers["Authorization"] = f"Bearer {_access_token(url)}"
    endpoint = f"{url}/v3/company/{REALM}/query"

    # POST with the SQL as an application/text body, as python-quickbooks sends it
    posted = httpx.post(endpoint, params={"minorversion": "75"}, headers={**headers, "Content-Type":
                        "application/text"}, content="select * from Customer STARTPOSITION 3 MAXRESULTS 2").json()
    assert [c["Id"] for c in posted["QueryResponse"]["Customer"]] == ["3", "4"]
    assert posted["QueryResponse"]["startPosition"] == 3 and posted["QueryResponse"]["maxResults"] == 2

    count = httpx.get(endpoint, params={"query": "SELECT COUNT(*) FROM Invoice WHERE Balance > '0'"},
                      headers=headers).json()
    open_invoices = [i for i in sandbox.emulator("quickbooks").dump("invoices") if i["Balance"] > 0]
    assert count["QueryResponse"] == {"totalCount": len(open_invoices)}

    empty = httpx.get(endpoint, params={"query": "SELECT * FROM Payment WHERE Id = '1'"}, headers=headers)
    assert empty.status_code == 200 and empty.json()["QueryResponse"] == {} and "time" in empty.json()

    bad = httpx.get(endpoint, params={"query": "SELECT * FROM Customer WHERE"}, headers=headers)
    fault = bad.json()["Fault"]
    assert bad.status_code == 400 and fault["type"] == "ValidationFault"
    assert fault["Error"][0]["code"] == "4000" and fault["Error"][0]["Detail"].startswith("QueryParserError:")

    expired = httpx.get(endpoint, params={"query": "SELECT * FROM Customer"},
                        headers={**headers, "Authorization": "Bearer not-a-token"})
    assert expired.status_code == 401 and expired.json()["fault"]["error"][0]["code"] == "3200"


def test_the_books_hold_what_accounting_would(sandbox):
    world, emulator = sandbox.state.world, sandbox.emulator("quickbooks")
    customers, invoices = emulator.dump("customers"), emulator.dump("invoices")
    payments = emulator.dump("payments")
    assert len(customers) == len(world.people)
    assert len({c["DisplayName"].casefold() for c in customers}) == len(customers)
    assert sorted(i["DocNumber"] for i in invoices) == sorted(i.number for i in world.invoices)
    assert len(payments) == len([p for p in world.payments if p.invoice is not None])
    by_number = {i["DocNumber"]: i for i in invoices}
    for invoice in world.invoices:
        booked = by_number[invoice.number]
        assert booked["TotalAmt"] == round(invoice.amount / 100, 2)
        assert (booked["Balance"] == 0) == invoice.paid

    mismatch = world.payments[world.anomalies["payment_amount_mismatch"]]
    settled = by_number[mismatch.invoice.number]
    [payment] = [p for p in payments if p["Line"][0]["LinkedTxn"][0]["TxnId"] == settled["Id"]]
    assert payment["TotalAmt"] == settled["TotalAmt"] == round((mismatch.amount + 100) / 100, 2)
    orphan = world.payments[world.anomalies["payment_without_invoice"]]
    assert orphan.invoice is None and len(payments) == sum(1 for p in world.payments if p.invoice)


# -- the official SDK as a judge -------------------------------------------------------------------------
def _sdk_client(sandbox_server, monkeypatch, refresh_token: str = REFRESH_TOKEN):
    """python-quickbooks as a business would configure it, pointed at the sandbox."""
    quickbooks = pytest.importorskip("quickbooks")
    from intuitlib.client import AuthClient

    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the sandbox speaks plain http on loopback
    auth = AuthClient(CLIENT_ID, CLIENT_SECRET, "http://localhost/callback",
                      environment=sandbox_server.url + "/.well-known/openid_configuration", refresh_token=refresh_token)
    client = quickbooks.QuickBooks(auth_client=auth, refresh_token=refresh_token, company_id=REALM, minorversion=75)
    client.api_url_v3 = sandbox_server.url + "/v3"
    return client



def test_python_quickbooks_sdk_reads_and_writes_against_the_sandbox(sandbox_server, sandbox, monkeypatch):
    client = _sdk_client(sandbox_server, monkeypatch)
    from quickbooks.objects.customer import Customer
    from quickbooks.objects.invoice import Invoice

    listed, start = [], 1
    while page := Customer.all(qb=client, start_position=start, max_results=7):
        listed += [c.Id for c in page]
        start += 7
    assert sorted(listed) == _ids(sandbox, "customers")
    assert Customer.count(qb=client) == len(listed)
    first = Customer.filter(DisplayName=sandbox.emulator("quickbooks").dump("customers")[0]["DisplayName"],
                            qb=client)
    assert [c.Id for c in first] == ["1"]

    invoice = Invoice.from_json(_invoice_body("2", 99.0))
    saved = invoice.save(qb=client, request_id="sdk-request-1")
    replayed = Invoice.from_json(_invoice_body("2", 99.0)).save(qb=client, request_id="sdk-request-1")
    assert saved.Id == replayed.Id and saved.TotalAmt == 99.0
    assert len([i for i in sandbox.emulator("quickbooks").dump("invoices") if i["DocNumber"] == "SYNC-0001"]) == 1



def test_python_quickbooks_reads_one_updates_with_its_sync_token_and_refuses_a_stale_one(sandbox_server, sandbox,
                                                                                          monkeypatch):
    """The world's INV-1037 (Linus Hamilton, USD 645.00, open in full), read by id; a customer's note edited through
    the SDK's save (Id + SyncToken: the update moves the token); the same edit from the old copy is QuickBooks'
    Stale Object Error 5010; an id the books do not have is the SDK's ObjectNotFoundException."""
    client = _sdk_client(sandbox_server, monkeypatch)
    from quickbooks.exceptions import ObjectNotFoundException, QuickbooksException
    from quickbooks.objects.customer import Customer
    from quickbooks.objects.invoice import Invoice

    [found] = Invoice.filter(DocNumber="INV-1037", qb=client)
    one = Invoice.get(found.Id, qb=client)
    assert (one.DocNumber, float(one.TotalAmt), float(one.Balance), one.CurrencyRef.value) == (
        "INV-1037", 645.0, 645.0, "USD")

    customer = Customer.get(one.CustomerRef.value, qb=client)
    stale = Customer.get(one.CustomerRef.value, qb=client)
    customer.Notes = "prefers invoices by email"
    saved = customer.save(qb=client)
    assert int(saved.SyncToken) == int(stale.SyncToken) + 1
    assert Customer.get(customer.Id, qb=client).Notes == "prefers invoices by email"
    stale.Notes = "an edit made on an old copy"
    with pytest.raises(QuickbooksException) as refused:
        stale.save(qb=client)
    assert refused.value.error_code == 5010

    with pytest.raises(ObjectNotFoundException):
        Invoice.get("999999", qb=client)


def test_python_quickbooks_voids_and_deletes_as_a_bookkeeper_does_and_cdc_reports_the_deletion(
        sandbox_server, sandbox, monkeypatch):
    """A bookkeeper cleans up the books with the SDK: a mistaken invoice is voided (kept under its number, every
    amount zero, `Voided` in its note), another is deleted (gone from reads and queries, reported only by
    ChangeDataCapture as `status: Deleted`). A paid invoice cannot be voided until its payment is deleted, which
    gives the invoice its balance back."""
    client = _sdk_client(sandbox_server, monkeypatch)
    from quickbooks.cdc import change_data_capture
    from quickbooks.exceptions import ObjectNotFoundException, QuickbooksException
    from quickbooks.objects.invoice import Invoice
    from quickbooks.objects.payment import Payment

    before = datetime.now(UTC) - timedelta(minutes=1)
    mistaken = Invoice.from_json({**_invoice_body("2", 99.0), "DocNumber": "SDK-VOID-1"}).save(qb=client)
    mistaken.void(qb=client)
    voided = Invoice.get(mistaken.Id, qb=client)
    assert (voided.DocNumber, float(voided.TotalAmt), float(voided.Balance)) == ("SDK-VOID-1", 0.0, 0.0)
    assert voided.PrivateNote.startswith("Voided") and int(voided.SyncToken) == int(mistaken.SyncToken) + 1

    duplicate = Invoice.from_json({**_invoice_body("2", 42.0), "DocNumber": "SDK-DEL-1"}).save(qb=client)
    answer = duplicate.delete(qb=client)
    assert answer["Invoice"] == {"Id": duplicate.Id, "status": "Deleted", "domain": "QBO"}
    with pytest.raises(ObjectNotFoundException):
        Invoice.get(duplicate.Id, qb=client)
    assert Invoice.filter(DocNumber="SDK-DEL-1", qb=client) == []

    changes = change_data_capture([Invoice], before.strftime("%Y-%m-%dT%H:%M:%S%z"), qb=client)
    by_id = {i.Id: i for i in changes.Invoice}
    assert by_id[duplicate.Id].status == "Deleted" and float(by_id[mistaken.Id].TotalAmt) == 0.0

    paid = next(p for p in Payment.all(qb=client, max_results=100) if p.Line and p.Line[0].LinkedTxn)
    invoice = Invoice.get(paid.Line[0].LinkedTxn[0].TxnId, qb=client)
    with pytest.raises(QuickbooksException) as refused:
        invoice.void(qb=client)
    assert refused.value.error_code == 6000
    balance = float(invoice.Balance)
    Payment.get(paid.Id, qb=client).delete(qb=client)
    released = Invoice.get(invoice.Id, qb=client)
    assert float(released.Balance) == round(balance + float(paid.Line[0].Amount), 2)
    released.void(qb=client)
    assert float(Invoice.get(invoice.Id, qb=client).TotalAmt) == 0.0


def test_python_quickbooks_with_a_refused_refresh_token_raises_the_sdks_error(sandbox_server, sandbox, monkeypatch):
    from intuitlib.exceptions import AuthClientError
    from quickbooks.objects.customer import Customer

    with pytest.raises(AuthClientError) as refused:
        Customer.all(qb=_sdk_client(sandbox_server, monkeypatch, refresh_token="FAKE-revoked-refresh-token"),
                     max_results=1)
    assert refused.value.status_code == 400 and b"invalid_grant" in refused.value.content

# -- rotation and expiry by the emulator's clock (docs/credentials.md) ------------------------------------------
def test_refresh_tokens_rotate_daily_and_the_old_one_dies_once_the_new_one_is_used(sandbox_server, sandbox):
    url = sandbox_server.url
    live = ("ABFAKEliveQuickBooksClientId00000000000000000000", "FAKEliveQuickBooksClientSecret000000000")
    control = httpx.post(url + "/_sandbox/quickbooks/connect", json={"client_id": live[0], "client_secret": live[1]})
    r0 = control.json()["refresh_token"]

    def refresh(token: str) -> httpx.Response:
        return httpx.post(url + TOKEN_PATH, auth=live, data={"grant_type": "refresh_token", "refresh_token": token})

    def advance(hours: float) -> None:
        httpx.post(url + "/_sandbox/quickbooks/clock", json={"advance_seconds": hours * 3600}).raise_for_status()

    first = refresh(r0).json()
    assert first["refresh_token"] == r0 and first["expires_in"] == 3600  # within 24 hours: the same token
    access = first["access_token"]
    query = f"{url}/v3/company/{REALM}/query"
    assert httpx.get(query, params={"query": "SELECT * FROM Customer"},
                     headers={"Authorization": f"Bearer {access}"}).status_code == 200
    advance(1)  # an access token lives one hour
    expired = httpx.get(query, params={"query": "SELECT * FROM Customer"},
                        headers={"Authorization": f"Bearer {access}"})
    assert expired.status_code == 401 and expired.json()["fault"]["error"][0]["code"] == "3200"

    advance(23)
    r1 = refresh(r0).json()["refresh_token"]
    assert r1 != r0, "a day later the answer carries a new refresh token"
    assert refresh(r0).json()["refresh_token"] == r1, "the previous one still works until the new one is used"
    assert refresh(r1).status_code == 200
    dead = refresh(r0)
    assert (dead.status_code, dead.json()["error"]) == (400, "invalid_grant")
    assert sandbox.emulator("quickbooks").superseded_refresh_tokens_presented == [r0, r0]  # type: ignore[attr-defined]
