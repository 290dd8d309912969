"""Xero (accounting), Accounting API 2.0: OAuth2 with rotating refresh tokens, one organisation (tenant) per
`xero-tenant-id` header, page-numbered lists, and `If-Modified-Since` for changes.

Facts the spec leans on:
- Tokens come from `https://identity.xero.com/connect/token` (refresh-token grant, client id and secret as
  HTTP Basic). Access tokens live 30 minutes; every refresh returns a *new* refresh token and the old one stops
  working shortly after. The engine keeps the rotated token in memory for the life of the process (so a long
  read that refreshes twice works); persisting it across processes is an engine feature still to come.
- Every API call names the organisation in `xero-tenant-id`; a missing or unknown tenant is 403
  `{"Title": "Forbidden", "Detail": "AuthenticationUnsuccessful"}`, a bad or expired token is 401.
- Lists (`/Contacts`, `/Invoices`, `/Payments`, `/ManualJournals`) page with `page=N&pageSize=M` (M ≤ 1000,
  default 100) and say how many pages exist in `pagination.pageCount`; `/Items` is not paginated and returns
  everything at once.
- Changes are found with the `If-Modified-Since` header (UTC, `2026-03-08T10:00:00`), which matches on
  `UpdatedDateUTC`. The cursor is that field, sent by Xero as a Microsoft JSON date `/Date(1767225600000+0000)/`.
- Pages are ordered by the record's own id (`order=InvoiceID`; ids are among Xero's "optimised" orderings for
  large organisations), not by `UpdatedDateUTC`: ordered by the change time, a record edited while we page moves
  to the end and every later record shifts one position back, so page numbering would silently skip one record
  whose old `UpdatedDateUTC` is below the cursor we then store — lost for good. Ordered by id, an edit moves
  nothing; a record that enters the filter mid-read is at worst read twice (upserted) or caught by the
  lookback on the next read.
- `includeArchived=true`: archiving is how Xero "deletes" contacts (and how invoices are filed away); without
  it an archived record silently vanishes from every later read and the warehouse keeps claiming it is active.
- Streams are not daily-partitioned: Xero's only server-side time filter worth paging on is the change header;
  its `where` filter on `Date` needs `DateTime(2026, 03, 07)` literals that the engine's template variables
  cannot spell yet, and a change to an old invoice (a payment) would be missed by a partition of its issue day.
- Errors: validation failures are 400 `{"ErrorNumber": 10, "Type": "ValidationException", "Message": "A
  validation exception occurred", "Elements": [{…, "ValidationErrors": [{"Message": "…"}]}]}`; the readable text
  is in the first element's `ValidationErrors`. Gateway errors (401/403/429) use problem details (`Detail`).
- Limits per organisation: 60 calls a minute, 5 in flight, 5,000 a day (and 10,000 a minute per app). Every
  answer reports `X-MinLimit-Remaining`, `X-DayLimit-Remaining`, `X-AppMinLimit-Remaining`; a 429 names the
  limit in `X-Rate-Limit-Problem` and says when to come back in `Retry-After`.
- Writes: creates are `PUT` (`{"Invoices": [...]}`, `{"Payments": [...]}`, `{"ManualJournals": [...]}`),
  create-or-update is `POST` (`{"Contacts": [...]}`, matched by `ContactID`); all take an `Idempotency-Key` header
  (≤ 128 characters) whose replay returns the first answer. Xero recommends at most 50 elements per batch.
- Manual journals: `Narration`, `Date`, `Status` (DRAFT by default, or POSTED), `LineAmountTypes` and at least two
  `JournalLines` whose signed `LineAmount`s (debit positive, credit negative) add up to zero, each on an
  `AccountCode` of the organisation's chart that is not a bank account (Xero refuses bank accounts in manual
  journals). A journal has no currency field: Xero books it in the organisation's base currency. Xero keeps no
  business key on a journal, so match before create is the caller's: the stream `manual_journals` (journal lines
  included, as Xero sends them only on paged reads) lets a sync find a journal whose `Narration` carries its record
  key (syncs/catalog/processor_fees_to_xero.py). Scope: `accounting.transactions`, like the other writes here; an
  app created after Xero's scope split (2 March 2026) is given the granular `accounting.manualjournals` (and
  `accounting.manualjournals.read`) instead.
"""

from __future__ import annotations

from .pagination import PageNumberPaginator, SinglePage
from .spec import EnvValue, Idempotency, OAuth2AuthSpec, RequestTemplate, Scopes, Stream, System, Writer

API_ROOT = "/api.xro/2.0"
MAX_PAGE_SIZE = 1000
"""Xero's cap on `pageSize` (since July 2024); the default page is 100."""
LOOKBACK_SECONDS = 300
"""Clock skew and edits committed while the previous read was paging; re-read rows are upserted, not duplicated."""
BATCH_SIZE = 50
IDEMPOTENCY = Idempotency(location="header", name="Idempotency-Key", max_length=128)


def _stream(name: str, resource: str, id_field: str, description: str, *, paginated: bool = True,
            include_archived: bool = False) -> Stream:
    """One list. `request` reads everything; `incremental_request` is the same request plus the change header,
    so a full read and a change read return records in the same shape (an unchanged record compares equal)."""
    params: dict[str, str] = {"order": f"{id_field} ASC"}
    if include_archived:
        params["includeArchived"] = "true"
    if paginated:
        params |= {"page": "{page}", "pageSize": "{page_size}"}
    path = f"{API_ROOT}/{resource}"
    return Stream(
        name=name,
        description=description,
        request=RequestTemplate(path=path, params=params),
        incremental_request=RequestTemplate(path=path, params=params, headers={"If-Modified-Since": "{cursor_iso}"}),
        # an empty organisation answers `"Invoices": []` inside the usual envelope; a page without the envelope
        # (an HTML error page from a proxy, a truncated body) is malformed, never "no more records"
        envelope_path="pagination" if paginated else resource,
        records_path=resource,
        primary_key=id_field,
        cursor_field="UpdatedDateUTC",
        cursor_format="dotnet",
        lookback_seconds=LOOKBACK_SECONDS,
        paginator=PageNumberPaginator(page_count_path="pagination.pageCount") if paginated else SinglePage(),
        page_size=MAX_PAGE_SIZE if paginated else 100,
    )


SYSTEM = System(
    name="xero",
    title="Xero",
    category="accounting",
    base_url="https://api.xero.com",
    docs_url="https://developer.xero.com/documentation/api/accounting/overview",
    values={
        "client_id": EnvValue(
            env="XERO_CLIENT_ID",
            sandbox="FAKE-sandbox-xero-client-id-0000000000000000",
            description="the app's Client id (developer.xero.com → My Apps → your app → Configuration)",
        ),
        "client_secret": EnvValue(
            env="XERO_CLIENT_SECRET",
            sandbox="FAKE-sandbox-xero-client-secret-integration-pipelines",
            description="a Client secret generated on the same page as the Client id",
        ),
        "refresh_token": EnvValue(
            env="XERO_REFRESH_TOKEN",
            sandbox="FAKE-sandbox-xero-refresh-token-integration-pipelines",
            description="a refresh token from connecting the app with the `offline_access` scope; Xero rotates "
            "it on every refresh and expires it after 60 days unused",
        ),
        "tenant_id": EnvValue(
            env="XERO_TENANT_ID",
            sandbox="00000000-fa4e-4000-8000-5a4db0c5e7e0",
            secret=False,
            description="the organisation's tenantId, listed by GET https://api.xero.com/connections",
        ),
    },
    auth=OAuth2AuthSpec(
        grant_type="refresh_token",
        token_url="https://identity.xero.com/connect/token",
        client_id="client_id",
        client_secret="client_secret",
        refresh_token="refresh_token",
        client_auth="basic",
    ),
    # Xero answers in XML unless JSON is asked for; every call names the organisation.
    headers={"xero-tenant-id": "{tenant_id}", "Accept": "application/json"},
    # 60 calls a minute and 5 concurrent per organisation: one a second with bursts of five stays under both.
    requests_per_second=1.0,
    burst=5,
    error_message_paths=(
        "Elements.0.ValidationErrors.0.Message",
        "Message",
        "Detail",
        "Title",
        "error",
    ),
    scopes=Scopes(
        read=("offline_access", "accounting.contacts.read", "accounting.transactions.read",
              "accounting.settings.read"),
        write=("offline_access", "accounting.contacts", "accounting.transactions"),
        writers={"create_invoices": ("accounting.transactions",), "create_payments": ("accounting.transactions",),
                 "create_manual_journals": ("accounting.transactions",), "save_contacts": ("accounting.contacts",)},
        implies={scope: (f"{scope}.read",) for scope in ("accounting.contacts", "accounting.transactions",
                                                          "accounting.settings")},
        note="OAuth 2.0 scopes requested when the app is connected; a read-only connection is a second "
        "authorization of the app with only the `.read` scopes (its own refresh token: XERO_READ_REFRESH_TOKEN).",
    ),
    streams=(
        _stream("contacts", "Contacts", "ContactID", "Contacts (customers and suppliers), archived ones included",
                include_archived=True),
        _stream("invoices", "Invoices", "InvoiceID", "Sales invoices (ACCREC) with line items, totals and "
                "amounts due", include_archived=True),
        _stream("payments", "Payments", "PaymentID", "Payments applied to invoices"),
        _stream("items", "Items", "ItemID", "Products and services (items), with stock for tracked ones",
                paginated=False),
        _stream("manual_journals", "ManualJournals", "ManualJournalID", "Manual journals (narration, status and "
                "journal lines), drafts and voided ones included: what a journal-entry sync matches before it creates"),
    ),
    writers=(
        Writer(
            name="create_invoices",
            description="Create invoices (DRAFT unless Status AUTHORISED is sent); a replayed key returns the "
            "first answer instead of a second invoice",
            method="PUT",
            path=f"{API_ROOT}/Invoices",
            batch_envelope="Invoices",
            batch_size=BATCH_SIZE,
            results_path="Invoices",
            id_path="InvoiceID",
            idempotency=IDEMPOTENCY,
        ),
        Writer(
            name="create_payments",
            description="Apply payments to authorised invoices (Invoice.InvoiceID, Account.Code, Date, Amount)",
            method="PUT",
            path=f"{API_ROOT}/Payments",
            batch_envelope="Payments",
            batch_size=BATCH_SIZE,
            results_path="Payments",
            id_path="PaymentID",
            idempotency=IDEMPOTENCY,
        ),
        Writer(
            name="create_manual_journals",
            description="Create manual journals (balanced JournalLines: debit positive, credit negative; DRAFT unless "
            "Status POSTED is sent); a replayed key returns the first answer instead of a second journal",
            method="PUT",
            path=f"{API_ROOT}/ManualJournals",
            batch_envelope="ManualJournals",
            batch_size=BATCH_SIZE,
            results_path="ManualJournals",
            id_path="ManualJournalID",
            idempotency=IDEMPOTENCY,
        ),
        Writer(
            name="save_contacts",
            description="Create contacts, or update those that carry their ContactID (only the fields sent)",
            method="POST",
            path=f"{API_ROOT}/Contacts",
            batch_envelope="Contacts",
            batch_size=BATCH_SIZE,
            results_path="Contacts",
            id_path="ContactID",
            idempotency=IDEMPOTENCY,
        ),
    ),
)
