"""NetSuite SuiteTalk (SOAP web services, 2024.2): customers, invoices, inventory items, purchase orders.

Reads are `search` with `searchPreferences.pageSize`, continued by `searchMoreWithId(searchId, pageIndex)` until
`totalPages`; incremental reads add `lastModifiedDate onOrAfter <cursor>` to the search (the stored cursor minus
a lookback for clock skew). Auth is Token-Based Authentication (a signed `tokenPassport` header per request).
`ExceededConcurrentRequestLimitFault` / `WS_REQUEST_BLOCKED` are retried with backoff like a 429. Writes are
`upsert` keyed by `externalId`, NetSuite's own idempotency mechanism.
"""

from __future__ import annotations

from typing import Any

from .spec import (
    EnvValue,
    NoAuthSpec,
    RequestTemplate,
    Scopes,
    SoapCall,
    SoapPaginator,
    SoapSystem,
    SoapWriter,
    Stream,
    System,
    TokenPassportAuthSpec,
)

ENDPOINT = "/services/NetSuitePort_2024_2"
CORE = "urn:core_2024_2.platform.webservices.netsuite.com"
COMMON = "urn:common_2024_2.platform.webservices.netsuite.com"
PURCHASES = "urn:purchases_2024_2.transactions.webservices.netsuite.com"
LOOKBACK_SECONDS = 300


def _search(search_type: str, record_type: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(full, incremental) `search` arguments; transactions are one search filtered by `type`."""
    base: dict[str, Any] = {"_type": f"{{{COMMON}}}{search_type}"}
    if record_type:
        base["type"] = {"operator": "anyOf", "searchValue": [record_type]}
    since = {"lastModifiedDate": {"operator": "onOrAfter", "searchValue": "{cursor_iso}"}}
    return {"searchRecord": base}, {"searchRecord": {**base, **since}}


def _stream(name: str, description: str, search_type: str, record_type: str | None = None) -> Stream:
    full, incremental = _search(search_type, record_type)
    return Stream(
        name=name,
        description=description,
        request=RequestTemplate(method="POST", path=ENDPOINT),
        primary_key="internalId",
        cursor_field="lastModifiedDate",
        lookback_seconds=LOOKBACK_SECONDS,
        page_size=50,
        soap=SoapCall(
            operation="search",
            arguments=full,
            incremental_arguments=incremental,
            soap_headers={"searchPreferences": {"bodyFieldsOnly": True, "pageSize": "{page_size}"}},
            records_path="recordList.record",
            success_path="status.isSuccess",
            messages_path="status.statusDetail",
            paginator=SoapPaginator(
                type="page_index",
                total_pages_path="totalPages",
                capture={"search_id": "searchId"},
                next_operation="searchMoreWithId",
                next_arguments={"searchId": "{search_id}", "pageIndex": "{page_index}"},
            ),
        ),
    )


SYSTEM = System(
    name="netsuite",
    title="NetSuite",
    category="erp",
    base_url="https://{account_host}.suitetalk.api.netsuite.com",
    docs_url="https://system.netsuite.com/help/helpcenter/en_US/srbrowser/Browser2024_2/schema/record/account.html",
    values={
        "account_id": EnvValue(env="NETSUITE_ACCOUNT_ID", sandbox="TSTDRV0000000", secret=False,
                               description="account id as in the tokenPassport (e.g. 1234567 or 1234567_SB1)"),
        "account_host": EnvValue(env="NETSUITE_ACCOUNT_HOST", sandbox="tstdrv0000000", secret=False,
                                 description="account id as in the host name (lowercase, `_` → `-`)"),
        "consumer_key": EnvValue(env="NETSUITE_CONSUMER_KEY", sandbox="FAKE-ns-consumer-key-0000",
                                 description="integration record consumer key"),
        "consumer_secret": EnvValue(env="NETSUITE_CONSUMER_SECRET", sandbox="FAKE-ns-consumer-secret-0000",
                                    description="integration record consumer secret"),
        "token_id": EnvValue(env="NETSUITE_TOKEN_ID", sandbox="FAKE-ns-token-id-0000",
                             description="access token id (Setup > Users/Roles > Access Tokens)"),
        "token_secret": EnvValue(env="NETSUITE_TOKEN_SECRET", sandbox="FAKE-ns-token-secret-0000",
                                 description="access token secret"),
    },
    auth=NoAuthSpec(),
    scopes=Scopes(
        read=("Log in using Access Tokens (Full)", "SOAP Web Services (Full)", "Lists → Customers (View)",
              "Lists → Items (View)", "Transactions → Invoice (View)", "Transactions → Purchase Order (View)"),
        write=("Log in using Access Tokens (Full)", "SOAP Web Services (Full)",
               "Transactions → Purchase Order (Create)"),
        writers={"upsert_purchase_order": ("Transactions → Purchase Order (Create)",)},
        note="Permissions of the role the access token is issued for; a read role and a write role, one token each.",
    ),
    streams=(
        _stream("customers", "Customers", "CustomerSearchBasic"),
        _stream("invoices", "Invoices (transactions of type _invoice)", "TransactionSearchBasic", "_invoice"),
        _stream("inventory_items", "Inventory items", "ItemSearchBasic", "_inventoryItem"),
        _stream("purchase_orders", "Purchase orders (transactions of type _purchaseOrder)",
                "TransactionSearchBasic", "_purchaseOrder"),
    ),
    requests_per_second=5.0,
    burst=5,
    soap=SoapSystem(
        wsdl="package:sandbox/wsdl/netsuite.wsdl",
        endpoint_path=ENDPOINT,
        auth=TokenPassportAuthSpec(
            account="account_id", consumer_key="consumer_key", consumer_secret="consumer_secret",
            token="token_id", token_secret="token_secret",
        ),
        transient_faults=("exceededConcurrentRequestLimitFault", "ExceededConcurrentRequestLimitFault",
                          "exceededRequestLimitFault", "WS_REQUEST_BLOCKED", "WS_CONCUR_SESSION_DISALLWD",
                          # NetSuite's catch-all server error; SuiteTalk guidance is to retry it
                          "UNEXPECTED_ERROR"),
        writers=(
            SoapWriter(
                name="upsert_purchase_order",
                description="create or update a purchase order by externalId (a retry leaves one record)",
                operation="upsert",
                record_type=f"{{{PURCHASES}}}PurchaseOrder",
                key_field="externalId",
                success_path="status.isSuccess",
                messages_path="status.statusDetail",
                id_path="baseRef.internalId",
            ),
        ),
    ),
)
