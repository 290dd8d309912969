-- entity: inventory
-- requires: raw_square.inventory_counts, raw_square.catalog_items
WITH variations AS (
    SELECT v->>'$.id' AS variation_id, v->>'$.item_variation_data.sku' AS sku
    FROM raw_square.catalog_items, unnest(CAST(_raw->'$.item_data.variations' AS JSON[])) AS t(v)
)
SELECT 'square' AS source_system, c._pk AS source_id, v.sku, c._raw->>'$.location_id' AS location,
       (c._raw->>'$.quantity')::DOUBLE AS quantity, (c._raw->>'$.calculated_at')::TIMESTAMPTZ AS updated_at
FROM raw_square.inventory_counts c
LEFT JOIN variations v ON v.variation_id = c._raw->>'$.catalog_object_id'
WHERE c._raw->>'$.state' = 'IN_STOCK'
