-- entity: inventory
-- requires: raw_shopify.inventory_levels, raw_shopify.products
WITH variants AS (
    SELECT v->>'$.inventory_item_id' AS inventory_item_id, v->>'$.sku' AS sku
    FROM raw_shopify.products, unnest(CAST(_raw->'$.variants' AS JSON[])) AS t(v)
)
SELECT 'shopify' AS source_system, l._pk AS source_id, v.sku, l._raw->>'$.location_id' AS location,
       (l._raw->>'$.available')::DOUBLE AS quantity, (l._raw->>'$.updated_at')::TIMESTAMPTZ AS updated_at
FROM raw_shopify.inventory_levels l
LEFT JOIN variants v ON v.inventory_item_id = l._raw->>'$.inventory_item_id'
