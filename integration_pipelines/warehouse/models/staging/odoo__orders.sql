-- entity: orders
-- requires: raw_odoo.sale_orders
SELECT 'odoo' AS source_system, _pk AS source_id, _raw->>'$.name' AS order_number,
       _raw->>'$.partner_id[0]' AS customer_source_id, _raw->>'$.state' AS status,
       _raw->>'$.currency_id[1]' AS currency, to_minor(_raw->>'$.amount_total', _raw->>'$.currency_id[1]') AS total_minor,
       (_raw->>'$.date_order')::TIMESTAMP AT TIME ZONE 'UTC' AS ordered_at,
       (_raw->>'$.write_date')::TIMESTAMP AT TIME ZONE 'UTC' AS updated_at
FROM raw_odoo.sale_orders
