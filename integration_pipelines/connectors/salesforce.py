"""Salesforce (CRM), REST API v62.0 with SOQL. OAuth2 refresh-token grant, records on the org's own host
(`instance_url`), `nextRecordsUrl`/`done` pagination, and a `SystemModstamp` change filter.

Facts the spec leans on:
- Auth is the OAuth 2.0 **refresh token flow** of a connected app (`grant_type=refresh_token`, client id and
  secret in the form body) against `login.salesforce.com`. It works for every org edition and needs no My
  Domain URL, unlike the client-credentials flow, which Salesforce only serves on the org's My Domain host. For
  a sandbox org set `SALESFORCE_TOKEN_URL=https://test.salesforce.com/services/oauth2/token`. The token answer
  carries no `expires_in` (sessions follow the org's timeout policy): the engine assumes an hour and refreshes
  once whenever the API answers 401 `INVALID_SESSION_ID` before that.
- Every API request goes to the `instance_url` the token endpoint names (`https://acme.my.salesforce.com`),
  never to the login host; `base_url` below is only the login host the engine starts from.
- SOQL names every field explicitly (there is no `SELECT *`), so the field lists below are the landed columns.
  They hold only standard fields: a custom field missing from an org (or hidden from the integration user by
  field-level security) would fail the whole query with `INVALID_FIELD`. `CurrencyIsoCode` exists only in
  multi-currency orgs, which a business invoicing in USD, GBP and EUR has; remove it for a single-currency org.
- `SystemModstamp` moves on every change, including system changes `LastModifiedDate` misses (roll-ups,
  automation), and is indexed; SOQL compares datetimes against *unquoted* ISO 8601 literals
  (`SystemModstamp >= 2026-03-07T00:00:00Z`). Long transactions can commit with a stamp a little in the past,
  hence the lookback. Deletions are not seen by `query` (they would need `queryAll` and `IsDeleted`).
- No time-window API exists for a daily partition beyond the same filter, so streams are unpartitioned.
- Batches hold at most 2,000 records; `Sforce-Query-Options: batchSize=N` asks for smaller ones (Salesforce
  does not go below 200 and treats the size as a hint).
- Errors are a JSON list `[{"message", "errorCode", "fields"}]`; the daily API allocation, when spent, answers
  403 `REQUEST_LIMIT_EXCEEDED` (treated like a 429). Salesforce has no per-second limit: the default rate below
  keeps even a non-stop run inside the smallest Enterprise allocation (100,000 requests per 24 h ≈ 1.16/s);
  25 concurrent long-running requests is the other documented ceiling, hence the burst.
- Writes have no idempotency key. The safe path is the upsert by an external-id field (`External_Id__c`, a
  custom Text field marked *External ID* and *Unique* that the org must have on Contact and Opportunity): a
  retried upsert updates the record it created. Plain creates (composite collection, Opportunity) are not
  idempotent; with `External_Id__c` filled a retried create fails with `DUPLICATE_VALUE` instead of
  duplicating, and the sync ledger must record created ids before retrying.
"""

from __future__ import annotations

from typing import Literal

from .pagination import NextUrlPaginator
from .spec import EnvValue, Idempotency, OAuth2AuthSpec, RequestTemplate, Scopes, Stream, System, Writer

API_VERSION = "62.0"
DATA_PATH = f"/services/data/v{API_VERSION}"
QUERY_PATH = f"{DATA_PATH}/query"
BATCH_SIZE = 2000  # Salesforce's maximum query batch
LOOKBACK_SECONDS = 300  # transactions that commit with a slightly older SystemModstamp; clock skew
EXTERNAL_ID_FIELD = "External_Id__c"

#: The sObject behind each stream and the fields it lands, in SOQL order.
OBJECTS: dict[str, str] = {
    "accounts": "Account",
    "contacts": "Contact",
    "opportunities": "Opportunity",
    "cases": "Case",
}

_AUDIT = ("OwnerId", "CreatedDate", "LastModifiedDate", "SystemModstamp", "IsDeleted")
FIELDS: dict[str, tuple[str, ...]] = {
    "accounts": (
        "Id", "Name", "Type", "Industry", "Website", "Phone", "BillingStreet", "BillingCity", "BillingPostalCode",
        "BillingCountry", "NumberOfEmployees", *_AUDIT,
    ),
    "contacts": (
        "Id", "AccountId", "FirstName", "LastName", "Name", "Email", "Phone", "Title", "MailingStreet",
        "MailingCity", "MailingPostalCode", "MailingCountry", "LeadSource", *_AUDIT,
    ),
    "opportunities": (
        "Id", "AccountId", "ContactId", "Name", "StageName", "CloseDate", "Amount", "CurrencyIsoCode",
        "Probability", "IsWon", "IsClosed", "Type", "LeadSource", *_AUDIT,
    ),
    "cases": (
        "Id", "CaseNumber", "AccountId", "ContactId", "Subject", "Status", "Priority", "Origin", "IsClosed",
        "ClosedDate", "SuppliedEmail", *_AUDIT,
    ),
}


def soql(stream: str, *, incremental: bool) -> str:
    """The stream's query: everything, or what changed since the cursor, oldest change first.

    Ordering by `SystemModstamp` (then `Id`, a stable tie-break) makes an interrupted incremental read safe to
    rerun from its stored cursor.
    """
    where = " WHERE SystemModstamp >= {cursor_iso}" if incremental else ""
    return f"SELECT {', '.join(FIELDS[stream])} FROM {OBJECTS[stream]}{where} ORDER BY SystemModstamp, Id"


def _query_stream(name: str, description: str) -> Stream:
    headers = {"Sforce-Query-Options": "batchSize={page_size}"}
    return Stream(
        name=name,
        description=description,
        request=RequestTemplate(path=QUERY_PATH, params={"q": soql(name, incremental=False)}, headers=headers),
        incremental_request=RequestTemplate(
            path=QUERY_PATH, params={"q": soql(name, incremental=True)}, headers=headers
        ),
        records_path="records",
        envelope_path="records",
        primary_key="Id",
        cursor_field="SystemModstamp",
        cursor_format="iso",
        lookback_seconds=LOOKBACK_SECONDS,
        paginator=NextUrlPaginator(next_url_path="nextRecordsUrl", done_path="done"),
        page_size=BATCH_SIZE,
    )


def _collection_writer(name: str, method: Literal["POST", "PATCH"], path: str, description: str) -> Writer:
    return Writer(
        name=name,
        description=description,
        method=method,
        path=path,
        batch_envelope="records",
        batch_size=200,  # sObject Collections take at most 200 records
        results_path=".",  # the answer is a bare list of results, in request order
        id_path="id",
        idempotency=Idempotency(location="none"),
    )


SYSTEM = System(
    name="salesforce",
    title="Salesforce",
    category="crm",
    base_url="https://login.salesforce.com",
    docs_url="https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/",
    values={
        "client_id": EnvValue(
            env="SALESFORCE_CLIENT_ID",
            sandbox="FAKE-sandbox-salesforce-consumer-key-3MVG9integrationpipelines",
            description="the connected app's consumer key (Setup → App Manager → your app → View → Manage "
            "Consumer Details)",
        ),
        "client_secret": EnvValue(
            env="SALESFORCE_CLIENT_SECRET",
            sandbox="FAKE-sandbox-salesforce-consumer-secret-0000",
            description="the connected app's consumer secret",
        ),
        "refresh_token": EnvValue(
            env="SALESFORCE_REFRESH_TOKEN",
            sandbox="FAKE-sandbox-salesforce-refresh-token-5Aep861integrationpipelines",
            description="a refresh token of the integration user, from one authorization-code login with the "
            "`api refresh_token` scopes",
        ),
    },
    auth=OAuth2AuthSpec(
        grant_type="refresh_token",
        token_url="https://login.salesforce.com/services/oauth2/token",
        client_id="client_id",
        client_secret="client_secret",
        refresh_token="refresh_token",
        client_auth="body",
        instance_url_field="instance_url",
    ),
    headers={"Accept": "application/json"},
    requests_per_second=1.0,
    burst=25,
    error_message_paths=("0.message", "error_description", "message"),
    rate_limit_markers=((403, "REQUEST_LIMIT_EXCEEDED"),),
    scopes=Scopes(
        read=("api", "refresh_token", "Read: Account, Contact, Opportunity, Case"),
        write=("api", "refresh_token", "Create/Edit: Contact, Opportunity, Account"),
        writers={"upsert_contact": ("Create/Edit: Contact",), "upsert_contacts": ("Create/Edit: Contact",),
                 "create_records": ("Create: Account, Contact, Opportunity",),
                 "create_opportunity": ("Create: Opportunity",)},
        implies={"full": ("api",)},  # `full` covers every scope but refresh_token
        note="OAuth scopes of the connected app plus object permissions of the integration user's permission set; "
        "a read-only integration user gets Read only.",
    ),
    streams=(
        _query_stream("accounts", "Accounts (companies) in the CRM"),
        _query_stream("contacts", "Contacts (people), linked to their account"),
        _query_stream("opportunities", "Opportunities (deals) with stage, amount and close date"),
        _query_stream("cases", "Support cases raised by contacts"),
    ),
    writers=(
        Writer(
            name="upsert_contact",
            description="Create or update one Contact by External_Id__c (path variable `external_id`): 201 "
            "when created, an update otherwise; a retry never duplicates.",
            method="PATCH",
            path=f"{DATA_PATH}/sobjects/Contact/{EXTERNAL_ID_FIELD}/{{external_id}}",
            id_path="id",
            idempotency=Idempotency(location="none"),
        ),
        _collection_writer(
            "upsert_contacts", "PATCH", f"{DATA_PATH}/composite/sobjects/Contact/{EXTERNAL_ID_FIELD}",
            "Upsert up to 200 Contacts by External_Id__c in one call (each record carries "
            "`attributes.type` and its External_Id__c); per-record results, a retry never duplicates.",
        ),
        _collection_writer(
            "create_records", "POST", f"{DATA_PATH}/composite/sobjects",
            "Create up to 200 records of any type (`attributes.type` on each), allOrNone=false: per-record "
            "results. Not idempotent: fill External_Id__c so a retry fails with DUPLICATE_VALUE.",
        ),
        Writer(
            name="create_opportunity",
            description="Create one Opportunity (Name, StageName, CloseDate required). Not idempotent: fill "
            "External_Id__c so a retry fails with DUPLICATE_VALUE, and keep the id in the sync ledger.",
            method="POST",
            path=f"{DATA_PATH}/sobjects/Opportunity",
            id_path="id",
            idempotency=Idempotency(location="none"),
        ),
    ),
)
