-- entity: payments
-- requires: raw_stripe.charges
SELECT
    'stripe' AS source_system,
    _pk AS source_id,
    'processor' AS kind,
    _raw->>'$.customer' AS customer_source_id,
    _raw->>'$.invoice' AS invoice_source_id,
    _raw->>'$.metadata.accounting_invoice' AS invoice_number,
    CASE WHEN (_raw->>'$.refunded')::BOOLEAN THEN 'refunded' ELSE _raw->>'$.status' END AS status,
    upper(_raw->>'$.currency') AS currency,
    (_raw->>'$.amount')::BIGINT AS amount_minor,
    NULL::BIGINT AS fee_minor,
    (_raw->>'$.amount_refunded')::BIGINT AS refunded_minor,
    to_timestamp((_raw->>'$.created')::BIGINT) AS paid_at
FROM raw_stripe.charges
