-- entity: orders
-- requires: raw_square.orders
SELECT 'square' AS source_system, _pk AS source_id,
       coalesce(_raw->>'$.reference_id', _pk) AS order_number,
       _raw->>'$.customer_id' AS customer_source_id, _raw->>'$.state' AS status,
       _raw->>'$.total_money.currency' AS currency, (_raw->>'$.total_money.amount')::BIGINT AS total_minor,
       (_raw->>'$.created_at')::TIMESTAMPTZ AS ordered_at, (_raw->>'$.updated_at')::TIMESTAMPTZ AS updated_at
FROM raw_square.orders
