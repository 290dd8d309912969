-- entity: purchase_orders
-- requires: raw_odoo.purchase_orders
SELECT 'odoo' AS source_system, _pk AS source_id, _raw->>'$.name' AS po_number,
       _raw->>'$.partner_id[1]' AS supplier_name, _raw->>'$.state' AS status,
       _raw->>'$.currency_id[1]' AS currency,
       to_minor(_raw->>'$.amount_total', _raw->>'$.currency_id[1]') AS total_minor,
       (_raw->>'$.date_order')::TIMESTAMP AT TIME ZONE 'UTC' AS ordered_at,
       (_raw->>'$.write_date')::TIMESTAMP AT TIME ZONE 'UTC' AS updated_at
FROM raw_odoo.purchase_orders
