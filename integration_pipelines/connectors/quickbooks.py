"""QuickBooks Online (Intuit accounting). REST v3 with a SQL-like query language, OAuth2 refresh tokens,
a realm (company) id in every path, and `?requestid=` for idempotent writes.

Why the streams look the way they do:
- Every entity is read through `/v3/company/{realm}/query` with `STARTPOSITION`/`MAXRESULTS` in the query
  text itself (1-based, at most 1000 per page), so the offset paginator fills `{offset}` inside the SQL.
- Incremental reads filter on `MetaData.LastUpdatedTime`, which moves on every change (creation-time filters
  would miss updates). With no stored cursor the cursor is the epoch, so one template serves the full read
  and the incremental one; it is declared as both `request` and `incremental_request` because the engine
  only hands the stored cursor to a stream that declares an incremental request.
- Pages are ordered by `Id`, not by `LastUpdatedTime`: Ids never change, so a record edited while we page
  through stays where it was. Ordered by the change time, an edited record would jump to the end and shift
  every later record one position back, and offset paging would silently skip one of them.
- Intuit answers with the company's local offset (`2026-03-08T10:00:00-08:00`); the cursor is parsed as an
  aware timestamp and sent back in UTC with an explicit offset, which QBO compares correctly.
- A deleted transaction leaves every query: only ChangeDataCapture (`/cdc?entities=Invoice&changedSince=..`, 30
  days back at most, no paging) reports it, as a stub with `status: Deleted`. `invoice_changes` and
  `payment_changes` read it so that staging can mark a deleted invoice void and drop a deleted payment; a void
  itself is an ordinary change (amounts zeroed, `Voided` in the private note) that the queries see.
- Error bodies are `{"Fault":{"Error":[{"Message","Detail","code"}],"type"}}`, except authentication
  failures, which come in a lower-case envelope `{"fault":{"error":[{"message","detail","code"}]}}`;
  a `Fault` can also arrive inside an HTTP 200 (a query QBO could not run), hence `body_error_path`.
"""

from __future__ import annotations

from .pagination import OffsetPaginator
from .spec import EnvValue, Idempotency, OAuth2AuthSpec, RequestTemplate, Scopes, Stream, System, Writer

MINOR_VERSION = "75"
"""The lowest minor version Intuit still serves (1-74 were retired in 2025); python-quickbooks sends it too."""

MAX_RESULTS = 1000
"""QBO's hard cap on MAXRESULTS per query page."""


def _query(entity: str, *, name_list: bool) -> str:
    # Name lists (customers, items, vendors) are "deleted" by deactivating them, and QBO leaves inactive rows
    # out of a query unless it filters on Active: without this, a deactivated customer would never be seen
    # again and its row in the warehouse would claim it is still active.
    active = "Active IN (true, false) AND " if name_list else ""
    return (
        f"SELECT * FROM {entity} WHERE {active}MetaData.LastUpdatedTime >= '{{cursor_iso_offset}}' "
        "ORDERBY Id STARTPOSITION {offset} MAXRESULTS {page_size}"
    )


def _entity_stream(name: str, entity: str, description: str, *, name_list: bool = False) -> Stream:
    request = RequestTemplate(
        path="/v3/company/{realm_id}/query",
        params={"query": _query(entity, name_list=name_list), "minorversion": MINOR_VERSION},
    )
    return Stream(
        name=name,
        description=description,
        request=request,
        incremental_request=request,
        envelope_path="QueryResponse",  # `{"QueryResponse": {}}` is how QBO says "no rows"
        records_path=f"QueryResponse.{entity}",
        primary_key="Id",
        cursor_field="MetaData.LastUpdatedTime",
        cursor_format="iso",
        lookback_seconds=300,  # clock skew and same-second edits; re-read rows are upserted, not duplicated
        paginator=OffsetPaginator(start=1),
        page_size=MAX_RESULTS,
    )


CDC_HISTORY_SECONDS = 29 * 86_400
"""ChangeDataCapture serves the last 30 days; a day less leaves room for clock skew between us and Intuit."""


def _changes_stream(name: str, entity: str, description: str) -> Stream:
    """ChangeDataCapture for one entity: the only read that reports a deleted transaction (as `{"Id", "status":
    "Deleted", "MetaData"}`), which queries leave out. It has no paging and returns at most 1,000 objects per entity;
    read after every change notice and nightly, a small business never comes near that."""
    request = RequestTemplate(path="/v3/company/{realm_id}/cdc",
                              params={"entities": entity, "changedSince": "{cursor_iso_offset}",
                                      "minorversion": MINOR_VERSION})
    return Stream(
        name=name,
        description=description,
        request=request,
        incremental_request=request,
        envelope_path="CDCResponse",
        records_path=f"CDCResponse.0.QueryResponse.0.{entity}",
        primary_key="Id",
        cursor_field="MetaData.LastUpdatedTime",
        cursor_format="iso",
        lookback_seconds=300,
        max_history_seconds=CDC_HISTORY_SECONDS,
    )


def _writer(entity: str, description: str) -> Writer:
    """Create or update one entity. QBO decides by the body: no `Id` creates; `Id` + current `SyncToken`
    updates (`"sparse": true` touches only the fields sent). `requestid` makes a retried write a replay."""
    return Writer(
        name=f"save_{entity.lower()}",
        description=description,
        method="POST",
        path=f"/v3/company/{{realm_id}}/{entity.lower()}",
        params={"minorversion": MINOR_VERSION},
        id_path=f"{entity}.Id",
        idempotency=Idempotency(location="query", name="requestid", max_length=50),
    )


SYSTEM = System(
    name="quickbooks",
    title="QuickBooks Online",
    category="accounting",
    base_url="https://quickbooks.api.intuit.com",
    docs_url="https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/customer",
    values={
        "client_id": EnvValue(
            env="QUICKBOOKS_CLIENT_ID",
            sandbox="ABsandboxFAKEclientIdIntegrationPipelines0000000000",
            description="the app's Client ID (developer.intuit.com → your app → Keys & credentials)",
        ),
        "client_secret": EnvValue(
            env="QUICKBOOKS_CLIENT_SECRET",
            sandbox="FAKEsandboxClientSecretIntegrationPipelines00",
            description="the app's Client Secret (same page as the Client ID)",
        ),
        "refresh_token": EnvValue(
            env="QUICKBOOKS_REFRESH_TOKEN",
            sandbox="AB11FAKEsandboxRefreshTokenIntegrationPipelines000000",
            description="a refresh token from connecting the app to the company (OAuth 2.0 Playground or "
            "your own connect flow); valid about 100 days and rotated by Intuit",
        ),
        "realm_id": EnvValue(
            env="QUICKBOOKS_REALM_ID",
            sandbox="9130350000000000",
            secret=False,
            description="the company (realm) id, shown as realmId when the app is connected",
        ),
    },
    auth=OAuth2AuthSpec(
        grant_type="refresh_token",
        token_url="https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
        client_id="client_id",
        client_secret="client_secret",
        refresh_token="refresh_token",
        client_auth="basic",
    ),
    # Without it QBO answers in XML.
    headers={"Accept": "application/json"},
    # Intuit: 500 requests per minute per realm and at most 10 in flight; 8/s stays under both.
    requests_per_second=8.0,
    burst=8,
    error_message_paths=(
        "Fault.Error.0.Detail",
        "Fault.Error.0.Message",
        "fault.error.0.message",
        "fault.error.0.detail",
        "error_description",
        "error",
    ),
    body_error_path="Fault",
    scopes=Scopes(
        read=("com.intuit.quickbooks.accounting",),
        write=("com.intuit.quickbooks.accounting",),
        note="Intuit has one accounting scope for reading and writing; least privilege is a separate connection "
        "by a QuickBooks user whose role is limited (Reports only / view), used for QUICKBOOKS_READ_*.",
    ),
    streams=(
        _entity_stream("customers", "Customer", "Customers (every person or company the business bills), "
                       "active or not", name_list=True),
        _entity_stream("invoices", "Invoice", "Invoices, with their lines, totals and open balance"),
        _entity_stream("payments", "Payment", "Customer payments and the invoices each one pays"),
        _changes_stream("invoice_changes", "Invoice", "Invoices changed or deleted in the last 30 days "
                        "(ChangeDataCapture): how a deleted invoice is seen"),
        _changes_stream("payment_changes", "Payment", "Payments changed or deleted in the last 30 days "
                        "(ChangeDataCapture): how a deleted payment is seen"),
    ),
    writers=(
        _writer("Customer", "Create a customer, or update one (sparse) given its Id and SyncToken"),
        _writer("Invoice", "Create an invoice, or update one (sparse) given its Id and SyncToken"),
        _writer("Payment", "Record a payment against invoices (LinkedTxn), or update one"),
        _writer("Purchase", "Record an expense paid from a bank or credit-card account (PaymentType, AccountRef, "
                "expense lines with AccountBasedExpenseLineDetail), or update one"),
        _writer("JournalEntry", "Post a balanced journal entry (debit and credit lines on accounts), or update one"),
    ),
)
