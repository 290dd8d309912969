"""Scenario 13: approved procurement-portal purchase requests → purchase orders in the ERP (Odoo).

Odoo receives the requests routed to it (`purchase_requests_routes.py`: `IP_PURCHASE_ORDERS_ROUTES` by supplier,
else `IP_PURCHASE_ORDERS_TARGET`, default Odoo); NetSuite, SAP and the legacy ERP have syncs of their own.

Today a buyer re-types each approved request into Odoo. Each approved request becomes one draft purchase order to
the vendor the requester chose (portal supplier names are matched to Odoo vendors by their first word), for the
Odoo product with the request's SKU, due on the date it is needed by.

Exactly once without an idempotency key (Odoo's external API has none): the order's `origin` (Source Document)
is the request id, unique in Odoo (the constraint a database synced this way carries), so a create sent twice is
refused with a ValidationError instead of stored twice. And a request whose order already exists in Odoo is never
created again even if our ledger lost it: the source reads the extracted Odoo purchase orders by `origin` and hands
the found id to the engine as the external id (search-before-create, done in the warehouse). The order is dated
when the request was approved (`date_order`), so the daily-partitioned Odoo extract of that day finds it.
"""

from ..spec import SyncSpec
from .purchase_requests_routes import ROUTE_SETTINGS, routed_requests

SYNC = SyncSpec(
    name="purchase_requests_to_odoo",
    title="Approved purchase requests → Odoo purchase orders",
    description="Creates one draft Odoo purchase order per approved procurement-portal request (origin = request id).",
    source_sql=f"""
        WITH {routed_requests("odoo")},
        vendors AS (
            SELECT (_raw->>'$.id')::BIGINT AS vendor_id, _raw->>'$.name' AS vendor_name
            FROM raw_odoo.partners
            WHERE (_raw->>'$.supplier_rank')::INT > 0 AND (_raw->>'$.active')::BOOLEAN
        ),
        existing AS (
            SELECT _raw->>'$.origin' AS origin, min(_pk) AS odoo_po_id
            FROM raw_odoo.purchase_orders
            GROUP BY 1
        )
        SELECT r.request_id,
               r.approved_at,
               v.vendor_id,
               v.vendor_name,
               CAST(p.source_id AS BIGINT) AS product_id,
               r.quantity,
               round(r.estimated_total_minor / nullif(r.quantity, 0) / 100, 2) AS unit_price,
               r.approved_at AS date_order,
               r.needed_by || ' 12:00:00' AS date_planned,
               e.odoo_po_id
        FROM requests AS r
        LEFT JOIN vendors AS v ON split_part(v.vendor_name, ' ', 1) = split_part(r.supplier, ' ', 1)
        LEFT JOIN core.products AS p ON p.source_system = 'odoo' AND p.sku = r.sku
        LEFT JOIN existing AS e ON e.origin = r.request_id
    """,
    source_assets=(("procurement_portal", "purchase_requests"), ("odoo", "partners"), ("odoo", "purchase_orders"),
                   ("core", "products")),
    key="request_id",
    start_column="approved_at",  # requests approved before the switch-on were ordered by hand
    target="odoo",
    mode="insert",
    create_writer="create_purchase_order",
    external_id_column="odoo_po_id",
    required_columns=("vendor_id", "product_id"),
    settings=ROUTE_SETTINGS,
    payload={
        "jsonrpc": "2.0",
        "method": "call",
        "id": 1,
        "params": {
            "service": "object",
            "method": "execute_kw",
            "args": ["{db}", "{uid}", "{api_key}", "purchase.order", "create", [{
                "partner_id": "{vendor_id}",
                "origin": "{request_id}",
                "date_order": "{date_order}",
                "date_planned": "{date_planned}",
                "order_line": [[0, 0, {"product_id": "{product_id}", "product_qty": "{quantity}",
                                       "price_unit": "{unit_price}"}]],
            }], {}],
        },
    },
    manual_minutes_per_record=6.0,
)
