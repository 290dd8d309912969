-- entity: payment_allocations
-- requires: raw_square.payments
-- A Square payment pays the accounting invoice its reference_id names.
SELECT 'square' AS source_system, _pk || ':1' AS source_id, _pk AS payment_source_id, 'processor' AS kind,
       NULL AS invoice_source_id, _raw->>'$.reference_id' AS invoice_number,
       _raw->>'$.amount_money.currency' AS currency, (_raw->>'$.amount_money.amount')::BIGINT AS amount_minor,
       _raw->>'$.note' AS reference
FROM raw_square.payments
