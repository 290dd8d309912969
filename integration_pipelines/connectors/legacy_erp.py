"""The older ERP platform: an on-premises inventory web service (SOAP 1.2, document/literal, WS-Security
UsernameToken). Stock levels and purchase orders are read page by page (`page`/`pageSize`, `totalPages`);
incremental reads pass `changedSince`. Purchase orders are created with `CreatePurchaseOrder`, idempotent by the
business key `poNumber`: the ERP answers `exists` with the order it already holds instead of adding a second.

The ERP sends no events. `CHANGE_PROBES` is the question the change poll (webhooks/change_poll.py) asks it every
few seconds instead: `GetStockLevels(changedSince)`, the same call an incremental read makes (a stock level's
`updatedAt` moves whenever its count does).
"""

from __future__ import annotations

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
    UsernameTokenAuthSpec,
)

ENDPOINT = "/ws/inventory/v1"
NS = "urn:legacy-erp:inventory:v1"


def _stream(name: str, description: str, operation: str, records_path: str, primary_key: str) -> Stream:
    paging = {"page": "{page_index}", "pageSize": "{page_size}"}
    return Stream(
        name=name,
        description=description,
        request=RequestTemplate(method="POST", path=ENDPOINT),
        primary_key=primary_key,
        cursor_field="updatedAt",
        lookback_seconds=120,
        page_size=25,
        soap=SoapCall(
            operation=operation,
            arguments=paging,
            incremental_arguments={"changedSince": "{cursor_iso}", **paging},
            records_path=records_path,
            paginator=SoapPaginator(type="page_index", total_pages_path="totalPages"),
        ),
    )


SYSTEM = System(
    name="legacy_erp",
    title="Legacy ERP",
    category="erp",
    base_url="https://{erp_host}",
    values={
        "erp_host": EnvValue(env="LEGACY_ERP_HOST", sandbox="erp.example.internal", secret=False,
                             description="host name of the ERP's web services (e.g. erp.corp.example:8443)"),
        "username": EnvValue(env="LEGACY_ERP_USERNAME", sandbox="FAKE-erp-integration-user",
                             description="the integration user's name"),
        "password": EnvValue(env="LEGACY_ERP_PASSWORD", sandbox="FAKE-erp-password-0000",
                             description="the integration user's password"),
    },
    auth=NoAuthSpec(),
    scopes=Scopes(
        read=("GetStockLevels", "GetPurchaseOrders"),
        write=("CreatePurchaseOrder",),
        writers={"create_purchase_order": ("CreatePurchaseOrder",)},
        note="The ERP's service accounts are granted operations; ask its administrators for a read-only account.",
    ),
    streams=(
        _stream("stock_levels", "Stock on hand per SKU and warehouse", "GetStockLevels",
                "stockLevels.stockLevel", "id"),
        _stream("purchase_orders", "Purchase orders to suppliers", "GetPurchaseOrders",
                "purchaseOrders.purchaseOrder", "poNumber"),
    ),
    requests_per_second=4.0,
    burst=4,
    soap=SoapSystem(
        wsdl="package:sandbox/wsdl/legacy_erp.wsdl",
        endpoint_path=ENDPOINT,
        auth=UsernameTokenAuthSpec(username="username", password="password", digest=True),
        transient_faults=("ServerBusy",),
        writers=(
            SoapWriter(
                name="create_purchase_order",
                description="create a purchase order; idempotent by poNumber",
                operation="CreatePurchaseOrder",
                arguments={"purchaseOrder": "{record}"},
                key_field="poNumber",
                id_path="purchaseOrder.poNumber",
            ),
        ),
    ),
)

#: stream → the reads whose answers say it changed (change_poll.py asks them from its own cursor)
CHANGE_PROBES: dict[str, tuple[Stream, ...]] = {"stock_levels": (SYSTEM.stream("stock_levels"),)}
