-- entity: orders
-- requires: raw_shopify.orders
SELECT 'shopify' AS source_system, _pk AS source_id, _raw->>'$.name' AS order_number,
       _raw->>'$.customer.id' AS customer_source_id, _raw->>'$.financial_status' AS status,
       _raw->>'$.currency' AS currency, to_minor(_raw->>'$.total_price', _raw->>'$.currency') AS total_minor,
       (_raw->>'$.created_at')::TIMESTAMPTZ AS ordered_at, (_raw->>'$.updated_at')::TIMESTAMPTZ AS updated_at
FROM raw_shopify.orders
