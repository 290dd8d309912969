"""Scenario 12: ERP stock levels → the storefronts' stock (Shopify and Square), mapped by SKU.

Today someone copies the ERP's on-hand numbers into each shop after every delivery, or the shops oversell. The
ERP is the system of record: per SKU, Odoo's on-hand quantity (WH/Stock), or the sum over SAP storage locations
where Odoo does not carry the SKU. Each storefront gets the absolute number, so replaying a write is harmless:
Shopify `inventory_levels/set` (no idempotency key, but absolute), Square `PHYSICAL_COUNT` changes in batches
with an `idempotency_key`. Keyed by storefront and SKU; only SKUs whose ERP quantity changed since the last push
are sent (the ledger's row hash), and a SKU the storefront does not sell is skipped by the join.
"""

from ..spec import SyncSpec

#: One row per SKU: the ERP's on-hand quantity (Odoo first, else SAP summed over storage locations).
ERP_STOCK = """
    WITH erp AS (
        SELECT sku,
               sum(quantity) FILTER (WHERE source_system = 'odoo') AS odoo_qty,
               sum(quantity) FILTER (WHERE source_system = 'sap') AS sap_qty,
               max(updated_at) AS updated_at
        FROM core.inventory
        WHERE source_category = 'erp' AND sku IS NOT NULL
        GROUP BY sku
    )
    SELECT sku, CAST(round(coalesce(odoo_qty, sap_qty)) AS BIGINT) AS quantity, updated_at FROM erp
"""

SYNCS = [
    SyncSpec(
        name="inventory_to_shopify",
        title="ERP stock → Shopify inventory levels",
        description="Sets each Shopify variant's available quantity to the ERP's on-hand stock, by SKU.",
        source_sql=f"""
            WITH erp_stock AS ({ERP_STOCK})
            SELECT 'shopify:' || s.sku AS stock_key,
                   s.sku,
                   CAST(regexp_extract(s.source_id, 'inventory_item_id=([0-9]+)', 1) AS BIGINT) AS inventory_item_id,
                   CAST(s.location AS BIGINT) AS location_id,
                   e.quantity
            FROM core.inventory AS s
            JOIN erp_stock AS e ON e.sku = s.sku
            WHERE s.source_system = 'shopify' AND s.sku IS NOT NULL
        """,
        source_assets=(("core", "inventory"),),
        key="stock_key",
        target="shopify",
        mode="upsert",
        create_writer="set_inventory_levels",
        update_writer="set_inventory_levels",
        required_columns=("inventory_item_id", "location_id", "quantity"),
        payload={"location_id": "{location_id}", "inventory_item_id": "{inventory_item_id}",
                 "available": "{quantity}"},
        manual_minutes_per_record=1.0,
    ),
    SyncSpec(
        name="inventory_to_square",
        title="ERP stock → Square inventory counts",
        description="Records the ERP's on-hand stock as a Square PHYSICAL_COUNT per item variation, by SKU.",
        source_sql=f"""
            WITH erp_stock AS ({ERP_STOCK})
            SELECT 'square:' || s.sku AS stock_key,
                   s.sku,
                   s.source_id AS catalog_object_id,
                   s.location AS location_id,
                   CAST(e.quantity AS VARCHAR) AS quantity,
                   strftime(coalesce(e.updated_at, date_trunc('day', now())) AT TIME ZONE 'UTC',
                            '%Y-%m-%dT%H:%M:%SZ') AS occurred_at
            FROM core.inventory AS s
            JOIN erp_stock AS e ON e.sku = s.sku
            WHERE s.source_system = 'square' AND s.sku IS NOT NULL
        """,
        source_assets=(("core", "inventory"),),
        key="stock_key",
        target="square",
        mode="upsert",
        create_writer="inventory_changes",
        update_writer="inventory_changes",
        required_columns=("catalog_object_id", "location_id", "quantity"),
        payload={
            "type": "PHYSICAL_COUNT",
            "physical_count": {"catalog_object_id": "{catalog_object_id}", "location_id": "{location_id}",
                               "state": "IN_STOCK", "quantity": "{quantity}", "occurred_at": "{occurred_at}"},
        },
        manual_minutes_per_record=1.0,
    ),
]
