-- entity: products
-- requires: raw_odoo.products
SELECT 'odoo' AS source_system, _pk AS source_id, nullif(_raw->>'$.default_code', 'false') AS sku,
       _raw->>'$.name' AS name, NULL AS currency, to_minor(_raw->>'$.list_price', 'USD') AS unit_price_minor,
       (_raw->>'$.write_date')::TIMESTAMP AT TIME ZONE 'UTC' AS updated_at
FROM raw_odoo.products
