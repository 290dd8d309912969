-- entity: payments
-- requires: raw_square.payments
SELECT 'square' AS source_system, _pk AS source_id, 'processor' AS kind,
       _raw->>'$.customer_id' AS customer_source_id,
       NULL AS invoice_source_id,
       _raw->>'$.reference_id' AS invoice_number,
       CASE _raw->>'$.status' WHEN 'COMPLETED' THEN
                CASE WHEN coalesce((_raw->>'$.refunded_money.amount')::BIGINT, 0) > 0 THEN 'refunded' ELSE 'succeeded' END
            WHEN 'FAILED' THEN 'failed' WHEN 'CANCELED' THEN 'failed' ELSE 'pending' END AS status,
       _raw->>'$.amount_money.currency' AS currency,
       (_raw->>'$.amount_money.amount')::BIGINT AS amount_minor,
       (_raw->>'$.processing_fee[0].amount_money.amount')::BIGINT AS fee_minor,
       coalesce((_raw->>'$.refunded_money.amount')::BIGINT, 0) AS refunded_minor,
       (_raw->>'$.created_at')::TIMESTAMPTZ AS paid_at
FROM raw_square.payments
