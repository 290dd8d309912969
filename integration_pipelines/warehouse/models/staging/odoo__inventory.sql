-- entity: inventory
-- requires: raw_odoo.products
SELECT 'odoo' AS source_system, _pk AS source_id, nullif(_raw->>'$.default_code', 'false') AS sku,
       'WH/Stock' AS location, (_raw->>'$.qty_available')::DOUBLE AS quantity,
       (_raw->>'$.write_date')::TIMESTAMP AT TIME ZONE 'UTC' AS updated_at
FROM raw_odoo.products
WHERE _raw->>'$.type' = 'product'
