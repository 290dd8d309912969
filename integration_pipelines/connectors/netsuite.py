"""NetSuite SuiteTalk (SOAP web services, 2024.2): customers, invoices, inventory items, purchase orders.

Reads are `search` with `searchPreferences.pageSize`, continued by `searchMoreWithId(searchId, pageIndex)` until
`totalPages`; incremental reads add `lastModifiedDate onOrAfter <cursor>` to the search (the stored cursor minus
a lookback for clock skew). Inventory items are the exception: an item's `quantityOnHand` is computed from
inventory transactions (adjustments, receipts, fulfillments …), which do not edit the item, so its
`lastModifiedDate` does not move when its stock does; `inventory_items` is therefore re-read in full every time
(a snapshot, like SAP's stock: unchanged rows are not rewritten), in pages of 1000, NetSuite's largest.

No webhooks: NetSuite can call out only from a SuiteScript someone deploys in the account. `CHANGE_PROBES` are the
cheap questions the change poll (webhooks/change_poll.py) asks instead, every few seconds: "which stock-moving
transactions, and which items, changed since …", both searches on `lastModifiedDate`.
Auth is Token-Based Authentication (a signed `tokenPassport` header per request).
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


def _search(search_type: str, record_types: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(full, incremental) `search` arguments; transactions are one search filtered by `type`."""
    base: dict[str, Any] = {"_type": f"{{{COMMON}}}{search_type}"}
    if record_types:
        base["type"] = {"operator": "anyOf", "searchValue": list(record_types)}
    since = {"lastModifiedDate": {"operator": "onOrAfter", "searchValue": "{cursor_iso}"}}
    return {"searchRecord": base}, {"searchRecord": {**base, **since}}


def _stream(name: str, description: str, search_type: str, *record_types: str, incremental: bool = True,
            page_size: int = 50) -> Stream:
    full, since = _search(search_type, record_types)
    return Stream(
        name=name,
        description=description,
        request=RequestTemplate(method="POST", path=ENDPOINT),
        primary_key="internalId",
        cursor_field="lastModifiedDate",
        lookback_seconds=LOOKBACK_SECONDS,
        page_size=page_size,
        soap=SoapCall(
            operation="search",
            arguments=full,
            incremental_arguments=since if incremental else None,
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
              "Lists → Items (View)", "Transactions → Invoice (View)", "Transactions → Purchase Order (View)",
              "Transactions → Find Transaction, Adjust Inventory, Item Receipt, Item Fulfillment (View; the change "
              "poll's search of stock-moving transactions)"),
        write=("Log in using Access Tokens (Full)", "SOAP Web Services (Full)",
               "Transactions → Purchase Order (Create)"),
        writers={"upsert_purchase_order": ("Transactions → Purchase Order (Create)",)},
        note="Permissions of the role the access token is issued for; a read role and a write role, one token each.",
    ),
    streams=(
        _stream("customers", "Customers", "CustomerSearchBasic"),
        _stream("invoices", "Invoices (transactions of type _invoice)", "TransactionSearchBasic", "_invoice"),
        _stream("inventory_items", "Inventory items with their on-hand quantity (a snapshot: re-read in full)",
                "ItemSearchBasic", "_inventoryItem", incremental=False, page_size=1000),
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

#: Transaction types (the search's `TransactionType` values) that move an item's on-hand quantity: adjustments,
#: transfers, receipts, fulfillments, invoices / cash sales / credit memos / cash refunds (where items ship or come
#: back on them, without Advanced Shipping) and assembly builds. Inventory worksheets are not searchable this way; a
#: stock change made by one is seen by the nightly read.
STOCK_TRANSACTIONS = ("_inventoryAdjustment", "_inventoryTransfer", "_itemReceipt", "_itemFulfillment", "_invoice",
                      "_cashSale", "_creditMemo", "_cashRefund", "_assemblyBuild", "_assemblyUnbuild")

#: stream → the questions whose answers say it changed (change_poll.py asks them, newest first by
#: lastModifiedDate, from its own cursor): stock-moving transactions, and item edits (new, renamed, inactivated).
CHANGE_PROBES: dict[str, tuple[Stream, ...]] = {
    "inventory_items": (
        _stream("stock_movements", "Transactions that moved stock", "TransactionSearchBasic", *STOCK_TRANSACTIONS,
                page_size=100),
        _stream("item_edits", "Item records edited", "ItemSearchBasic", "_inventoryItem", page_size=100),
    ),
}
