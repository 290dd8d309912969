"""Scenario 13, NetSuite: approved purchase requests routed to NetSuite → NetSuite purchase orders (SOAP).

Each request routed to NetSuite (`purchase_requests_routes.py`) becomes one purchase order through SuiteTalk
`upsert`, keyed by `externalId` = the request id: NetSuite's own idempotency, so a retried or re-sent upsert
(an answer lost after NetSuite applied it) finds the order it made instead of adding a second. The vendor is the
NetSuite vendor of that name (as the extracted purchase orders name their vendors), the line the inventory item
whose itemId is the request's SKU; the rate is the request's estimated unit price, the memo says which request
and when it is needed by.
"""

from ..spec import SyncSpec
from .purchase_requests_routes import ROUTE_SETTINGS, routed_requests

SYNC = SyncSpec(
    name="purchase_requests_to_netsuite",
    title="Approved purchase requests → NetSuite purchase orders",
    description="Upserts one NetSuite purchase order per approved procurement-portal request routed to NetSuite "
    "(externalId = request id).",
    source_sql=f"""
        WITH {routed_requests("netsuite")},
        vendors AS (
            SELECT _raw->>'$.entity.name' AS vendor_name, min(_raw->>'$.entity.internalId') AS vendor_id
            FROM raw_netsuite.purchase_orders
            WHERE _raw->>'$.entity.internalId' IS NOT NULL
            GROUP BY 1
        ),
        items AS (
            SELECT _raw->>'$.itemId' AS sku, min(_pk) AS item_id
            FROM raw_netsuite.inventory_items
            GROUP BY 1
        )
        SELECT r.request_id,
               r.approved_at,
               v.vendor_id,
               i.item_id,
               r.quantity,
               CAST(round(r.estimated_total_minor / nullif(r.quantity, 0) / 100, 2) AS VARCHAR) AS rate,
               replace(r.approved_at, ' ', 'T') || 'Z' AS tran_date,
               'Purchase request ' || r.request_id || ', needed by ' || r.needed_by AS memo
        FROM requests AS r
        LEFT JOIN vendors AS v ON lower(v.vendor_name) = lower(trim(r.supplier))
        LEFT JOIN items AS i ON i.sku = r.sku
    """,
    source_assets=(("procurement_portal", "purchase_requests"), ("netsuite", "purchase_orders"),
                   ("netsuite", "inventory_items")),
    key="request_id",
    start_column="approved_at",  # requests approved before the switch-on were ordered by hand
    target="netsuite",
    mode="insert",
    create_writer="upsert_purchase_order",
    required_columns=("vendor_id", "item_id"),
    settings=ROUTE_SETTINGS,
    payload={
        "externalId": "{request_id}",
        "entity": {"internalId": "{vendor_id}"},
        "tranDate": "{tran_date}",
        "memo": "{memo}",
        "itemList": {"item": [{"item": {"internalId": "{item_id}"}, "quantity": "{quantity}", "rate": "{rate}"}]},
    },
    manual_minutes_per_record=6.0,
)
