"""SAP S/4HANA Cloud (ERP) through its OData V2 APIs: business partners, products, material stock and sales
orders, plus creating sales orders.

Why the streams look the way they do:
- Every entity set answers in the OData V2 "verbose JSON" envelope `{"d": {"results": [...], "__count": "N",
  "__next": "..."}}` when asked with `$format=json` (without it SAP answers Atom XML). `d` is in every page;
  `d.results` holds the records, each with `__metadata {id, uri, type}`.
- Paging is client-driven: `$top={page_size}&$skip={offset}` with `$inlinecount=allpages`, a short page ends
  the read. Many SAP services do not implement server-driven paging (`__next`) at all and would answer an
  unbounded request in one piece, so `$top` is what keeps memory bounded. Pages are ordered by the entity's
  key, not by the change timestamp: keys never change and new documents get higher numbers, so a record
  edited while we page through stays where it is (ordered by change time it would jump to the end and shift
  every later record back one position, and `$skip` would silently step over one of them).
  `SAP_PAGE_SIZE` must stay at or below the service's maximum page size: a page SAP cuts short because of its
  own cap would end the read early (SAP's cap varies by service and is not published per API; 1000 is the
  conservative default, and the sandbox cuts at 5000).
- Incremental reads filter on the change timestamp, typed as SAP types it, because SAP Gateway refuses a
  `datetime'…'` literal for an `Edm.DateTimeOffset` property and vice versa:
  - `A_Product` and `A_SalesOrder` have `LastChangeDateTime` (`Edm.DateTimeOffset`, `/Date(ms+0000)/`):
    `LastChangeDateTime gt datetimeoffset'{cursor_iso}'`, with a lookback for clock skew.
  - `A_BusinessPartner` has only a date and a time (`LastChangeDate` `Edm.DateTime` at midnight,
    `LastChangeTime` `PT10H00M00S`), and `LastChangeDate` stays null until the partner is first changed: the
    filter is `LastChangeDate ge datetime'{cursor_date}T00:00:00' or CreationDate ge …`, so the whole last day
    is re-read every time (that is the lookback; re-read rows are compared and not rewritten) and partners
    created but never changed are still seen.
  - `A_MatlStkInAcctMod` (stock per material, plant, storage location, batch, stock type …) has no change
    timestamp at all: it is a snapshot, re-read in full on every run; unchanged rows are not rewritten.
    SAP sends no webhooks here either, so the change poll (webhooks/change_poll.py) asks `CHANGE_PROBES`: the same
    entity set with only its key and quantity (`$select`), compared by digest with the previous answer. The
    cheaper question a real S/4HANA answers is "which material documents (goods movements) were posted since …"
    (`API_MATERIAL_DOCUMENT_SRV`); the sandbox does not emulate material documents, so that is not used yet.
- Sales orders are daily-partitioned on `CreationDate` (documents pile up; master data does not), with the
  change filter added inside each partition once it has a cursor.
- The stock entity's key has eleven fields (Material, Plant, StorageLocation, Batch, Supplier, Customer,
  WBSElementInternalID, SDDocument, SDDocumentItem, InventorySpecialStockType, InventoryStockType); Material
  alone is not unique even within one plant (storage locations, stock types). The engine takes one primary key
  path, so the stream keys on `__metadata.id`, the entity's canonical OData URI, which carries every key
  field. It includes the host, so keys are stable per `SAP_HOST`.
- Errors are `{"error": {"code": "/IWBEP/CM_MGW_RT/022", "message": {"lang": "en", "value": "…"}}}`; logon
  failures are a 401 with an HTML page from the ICF, which the engine turns into an auth error naming the
  variables to check.
- Writes need SAP's CSRF handshake: `GET <service root>` with `X-CSRF-Token: Fetch` returns the token and a
  session cookie, and the POST sends both (the writer's `csrf_fetch_path`). OData has no idempotency key:
  a sales order carries the customer's purchase order number (`PurchaseOrderByCustomer`), which SAP checks
  for duplicates per sold-to party when the order type is configured to (an error, not a warning, in the
  sandbox): a retried create is refused with SAP's message instead of creating a second order.

Auth: basic auth with a communication user (Communication Arrangement in S/4HANA Cloud). Both the user and its
password are declared secret on purpose: the engine then demands both in live mode (a non-secret value would
silently fall back to the sandbox's fake user) and names both when SAP answers 401. OAuth2 client credentials
(SAP BTP / communication user with OAuth) would be declared as:

    auth=OAuth2AuthSpec(grant_type="client_credentials", token_url="https://{host}/sap/bc/sec/oauth2/token",
                        client_id="client_id", client_secret="client_secret", client_auth="basic")

with `SAP_CLIENT_ID` / `SAP_CLIENT_SECRET` values (the engine renders no placeholders in `token_url` today, so
a tenant-specific token URL would need `SAP_TOKEN_URL` set as an override).
"""

from __future__ import annotations

from typing import Any

from .pagination import OffsetPaginator
from .spec import (
    BasicAuthSpec,
    EnvValue,
    Idempotency,
    RequestTemplate,
    Scopes,
    Stream,
    System,
    Writer,
    WriterLookup,
)

ODATA_ROOT = "/sap/opu/odata/sap"
PAGE_SIZE = 1000
LOOKBACK_SECONDS = 300  # clock skew between SAP's application servers and same-second edits

#: The key of `A_MatlStkInAcctMod`, in SAP's order; ordering by all of it makes `$skip` paging stable.
STOCK_KEY = (
    "Material", "Plant", "StorageLocation", "Batch", "Supplier", "Customer", "WBSElementInternalID", "SDDocument",
    "SDDocumentItem", "InventorySpecialStockType", "InventoryStockType",
)

BP_CHANGED_SINCE = (
    "LastChangeDate ge datetime'{cursor_date}T00:00:00' or CreationDate ge datetime'{cursor_date}T00:00:00'"
)
CHANGED_SINCE = "LastChangeDateTime gt datetimeoffset'{cursor_iso}'"
CREATED_IN_WINDOW = (
    "CreationDate ge datetime'{window_start_date}T00:00:00' and CreationDate lt datetime'{window_end_date}T00:00:00'"
)


def _params(order_by: str, *, filter_: str | None = None, expand: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "$format": "json",
        "$inlinecount": "allpages",
        "$orderby": order_by,
        "$top": "{page_size}",
        "$skip": "{offset}",
    }
    if filter_:
        params["$filter"] = filter_
    if expand:
        params["$expand"] = expand
    return params


def _stream(
    name: str,
    description: str,
    path: str,
    *,
    key: str,
    order_by: str,
    cursor_field: str | None = None,
    full_filter: str | None = None,
    changed_filter: str | None = None,
    expand: str | None = None,
    lookback_seconds: int = 0,
    partitioned: bool = False,
) -> Stream:
    incremental = None
    if changed_filter is not None:
        combined = f"({full_filter}) and ({changed_filter})" if full_filter else changed_filter
        incremental = RequestTemplate(path=path, params=_params(order_by, filter_=combined, expand=expand))
    return Stream(
        name=name,
        description=description,
        request=RequestTemplate(path=path, params=_params(order_by, filter_=full_filter, expand=expand)),
        incremental_request=incremental,
        records_path="d.results",
        envelope_path="d",
        primary_key=key,
        cursor_field=cursor_field,
        cursor_format="dotnet",
        lookback_seconds=lookback_seconds,
        partitioned="daily" if partitioned else None,
        paginator=OffsetPaginator(start=0),
        page_size=PAGE_SIZE,
    )


SYSTEM = System(
    name="sap",
    title="SAP S/4HANA",
    category="erp",
    base_url="https://{host}",
    docs_url="https://api.sap.com/products/SAPS4HANACloud/apis/ODATA",
    values={
        "host": EnvValue(
            env="SAP_HOST",
            sandbox="my000000-api.FAKE-sandbox.s4hana.cloud.sap.invalid",
            secret=False,
            description="the tenant's API host, e.g. my123456-api.s4hana.cloud.sap (no https://)",
        ),
        "username": EnvValue(
            env="SAP_USERNAME",
            sandbox="FAKE_SANDBOX_COMM_USER",
            description="the communication user of Communication Arrangements for the business partner, "
            "product, material stock and sales order APIs (e.g. SAP_COM_0008, SAP_COM_0009, SAP_COM_0164, "
            "SAP_COM_0109)",
        ),
        "password": EnvValue(
            env="SAP_PASSWORD",
            sandbox="FAKE-sandbox-password-integration-pipelines",
            description="that communication user's password",
        ),
    },
    auth=BasicAuthSpec(username="username", password="password"),
    headers={"Accept": "application/json"},
    # SAP publishes no fixed request rate for S/4HANA Cloud APIs (fair use; 429/503 with Retry-After when the
    # tenant is busy). Ten requests a second keeps one extract from crowding out the tenant's own users.
    requests_per_second=10.0,
    burst=10,
    error_message_paths=("error.message.value", "error.message", "error.code"),
    scopes=Scopes(
        read=("SAP_COM_0008 (Business Partner)", "SAP_COM_0009 (Product)", "SAP_COM_0164 (Material Stock)",
              "SAP_COM_0109 (Sales Order, read)"),
        write=("SAP_COM_0109 (Sales Order)", "SAP_COM_0053 (Purchase Order Integration)"),
        writers={"create_sales_order": ("SAP_COM_0109 (Sales Order)",),
                 "create_purchase_order": ("SAP_COM_0053 (Purchase Order Integration)",)},
        note="Communication arrangements of the communication user; a read user and a write user.",
    ),
    streams=(
        _stream(
            "business_partners",
            "Business partners: customers (persons) and organisations",
            f"{ODATA_ROOT}/API_BUSINESS_PARTNER/A_BusinessPartner",
            key="BusinessPartner",
            order_by="BusinessPartner",
            cursor_field="LastChangeDate",
            changed_filter=BP_CHANGED_SINCE,
        ),
        _stream(
            "products",
            "Products (materials and services) with their descriptions; Product is the SKU",
            f"{ODATA_ROOT}/API_PRODUCT_SRV/A_Product",
            key="Product",
            order_by="Product",
            cursor_field="LastChangeDateTime",
            changed_filter=CHANGED_SINCE,
            expand="to_Description",
            lookback_seconds=LOOKBACK_SECONDS,
        ),
        _stream(
            "material_stock",
            "Stock per material, plant, storage location and stock type (a snapshot: no change timestamp)",
            f"{ODATA_ROOT}/API_MATERIAL_STOCK_SRV/A_MatlStkInAcctMod",
            key="__metadata.id",
            order_by=",".join(STOCK_KEY),
        ),
        _stream(
            "sales_orders",
            "Sales orders with their items, by creation day",
            f"{ODATA_ROOT}/API_SALES_ORDER_SRV/A_SalesOrder",
            key="SalesOrder",
            order_by="SalesOrder",
            cursor_field="LastChangeDateTime",
            full_filter=CREATED_IN_WINDOW,
            changed_filter=CHANGED_SINCE,
            expand="to_Item",
            lookback_seconds=LOOKBACK_SECONDS,
            partitioned=True,
        ),
    ),
    writers=(
        Writer(
            name="create_sales_order",
            description="Create a sales order with its items (deep insert `to_Item`). Set "
            "`PurchaseOrderByCustomer` to the sync's stable key: SAP refuses a second order with the same "
            "customer reference for the same sold-to party, which is what makes a retried create harmless.",
            method="POST",
            path=f"{ODATA_ROOT}/API_SALES_ORDER_SRV/A_SalesOrder",
            id_path="d.SalesOrder",
            idempotency=Idempotency(location="none"),
            csrf_fetch_path=f"{ODATA_ROOT}/API_SALES_ORDER_SRV/",
        ),
        Writer(
            name="create_purchase_order",
            description="Create a purchase order with its items and schedule lines (deep insert "
            "`to_PurchaseOrderItem`/`to_ScheduleLine`). SAP makes no purchase order reference unique and OData has "
            "no idempotency key, so the create is never repeated blindly: put the sync's key in "
            "`CorrespncInternalReference` (Our Reference, 12 characters), and a create whose answer was lost is "
            "looked up by it (one order found: linked; none: not created).",
            method="POST",
            path=f"{ODATA_ROOT}/API_PURCHASEORDER_PROCESS_SRV/A_PurchaseOrder",
            id_path="d.PurchaseOrder",
            idempotency=Idempotency(location="none"),
            creates=True,
            csrf_fetch_path=f"{ODATA_ROOT}/API_PURCHASEORDER_PROCESS_SRV/",
            lookup=WriterLookup(
                request=RequestTemplate(
                    path=f"{ODATA_ROOT}/API_PURCHASEORDER_PROCESS_SRV/A_PurchaseOrder",
                    params={"$filter": "CorrespncInternalReference eq '{reference}'", "$select": "PurchaseOrder",
                            "$format": "json"},
                ),
                variables={"reference": "CorrespncInternalReference"},
                results_path="d.results",
                id_path="PurchaseOrder",
            ),
        ),
    ),
)

#: stream → the reads whose answers say it changed (change_poll.py): stock has no change timestamp, so the probe is
#: the stock snapshot itself, narrowed to its key and quantity, and compared by digest with the last answer.
CHANGE_PROBES: dict[str, tuple[Stream, ...]] = {
    "material_stock": (
        Stream(
            name="material_stock_quantities",
            description="Stock quantities per material, plant, storage location and stock type",
            request=RequestTemplate(
                path=f"{ODATA_ROOT}/API_MATERIAL_STOCK_SRV/A_MatlStkInAcctMod",
                params={**_params(",".join(STOCK_KEY)),
                        "$select": ",".join((*STOCK_KEY, "MatlWrhsStkQtyInMatlBaseUnit"))},
            ),
            records_path="d.results",
            envelope_path="d",
            primary_key="__metadata.id",
            paginator=OffsetPaginator(start=0),
            page_size=PAGE_SIZE,
            max_pages=50,
        ),
    ),
}
