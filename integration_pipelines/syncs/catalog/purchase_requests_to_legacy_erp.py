"""Scenario 13, legacy ERP: approved purchase requests routed to the older ERP platform → its purchase orders (SOAP).

Each request routed to the legacy ERP (`purchase_requests_routes.py`) becomes one purchase order through
`CreatePurchaseOrder` with `poNumber` = the request id. The ERP is idempotent by that business key: a create sent
again (its answer was lost, or the ledger lost its record) is answered `exists` with the order it already holds,
so a request is ordered once. The ERP names suppliers as text (the portal's supplier name), orders are dated when
the request was approved and land in the warehouse `IP_PURCHASE_ORDERS_LEGACY_ERP_WAREHOUSE` (default MAIN).
"""

from ..spec import SyncSetting, SyncSpec
from .purchase_requests_routes import ROUTE_SETTINGS, routed_requests

SYNC = SyncSpec(
    name="purchase_requests_to_legacy_erp",
    title="Approved purchase requests → legacy ERP purchase orders",
    description="Creates one legacy-ERP purchase order per approved procurement-portal request routed to it "
    "(poNumber = request id; the ERP answers `exists` to a repeat).",
    source_sql=f"""
        WITH {routed_requests("legacy_erp")}
        SELECT r.request_id,
               r.approved_at,
               trim(r.supplier) AS supplier,
               (SELECT value FROM _sync_settings WHERE name = 'warehouse') AS warehouse,
               left(r.approved_at, 10) AS order_date,
               r.currency,
               r.sku,
               CAST(r.quantity AS BIGINT) AS quantity,
               CAST(round(r.estimated_total_minor / nullif(r.quantity, 0) / 100, 2) AS VARCHAR) AS unit_price
        FROM requests AS r
    """,
    source_assets=(("procurement_portal", "purchase_requests"),),
    key="request_id",
    start_column="approved_at",  # requests approved before the switch-on were ordered by hand
    target="legacy_erp",
    mode="insert",
    create_writer="create_purchase_order",
    required_columns=("supplier", "sku", "quantity"),
    settings={**ROUTE_SETTINGS, "warehouse": SyncSetting(
        env="IP_PURCHASE_ORDERS_LEGACY_ERP_WAREHOUSE", default="MAIN",
        description="the legacy ERP warehouse purchase orders are received into")},
    payload={
        "poNumber": "{request_id}",
        "supplier": "{supplier}",
        "warehouse": "{warehouse}",
        "orderDate": "{order_date}",
        "currency": "{currency}",
        "lines": {"line": [{"sku": "{sku}", "quantity": "{quantity}", "unitPrice": "{unit_price}"}]},
    },
    manual_minutes_per_record=6.0,
)
