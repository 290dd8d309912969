-- entity: products
-- requires: raw_shopify.products
SELECT 'shopify' AS source_system, v->>'$.id' AS source_id, v->>'$.sku' AS sku,
       concat_ws(' - ', _raw->>'$.title', nullif(v->>'$.title', 'Default Title')) AS name,
       'USD' AS currency, to_minor(v->>'$.price', 'USD') AS unit_price_minor,
       (v->>'$.updated_at')::TIMESTAMPTZ AS updated_at
FROM raw_shopify.products, unnest(CAST(_raw->'$.variants' AS JSON[])) AS t(v)
