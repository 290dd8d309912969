-- entity: products
-- requires: raw_square.catalog_items
SELECT 'square' AS source_system, v->>'$.id' AS source_id,
       v->>'$.item_variation_data.sku' AS sku,
       concat_ws(' - ', _raw->>'$.item_data.name', v->>'$.item_variation_data.name') AS name,
       v->>'$.item_variation_data.price_money.currency' AS currency,
       (v->>'$.item_variation_data.price_money.amount')::BIGINT AS unit_price_minor,
       (v->>'$.updated_at')::TIMESTAMPTZ AS updated_at
FROM raw_square.catalog_items, unnest(CAST(_raw->'$.item_data.variations' AS JSON[])) AS t(v)
