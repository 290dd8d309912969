-- entity: payments
-- requires: raw_stripe.charges
-- optional: raw_stripe.balance_transactions
-- Stripe puts no fee on a charge: fee_minor is the fee of the charge's balance transaction (`balance_transaction`),
-- null (unknown, so fee bookings wait) until the balance transactions are read, and when Stripe settled the charge
-- in another currency than it was paid in (the fee is then in the settlement currency, not the payment's).
SELECT
    'stripe' AS source_system,
    c._pk AS source_id,
    'processor' AS kind,
    c._raw->>'$.customer' AS customer_source_id,
    c._raw->>'$.invoice' AS invoice_source_id,
    c._raw->>'$.metadata.accounting_invoice' AS invoice_number,
    CASE WHEN (c._raw->>'$.refunded')::BOOLEAN THEN 'refunded' ELSE c._raw->>'$.status' END AS status,
    upper(c._raw->>'$.currency') AS currency,
    (c._raw->>'$.amount')::BIGINT AS amount_minor,
    CASE WHEN lower(b._raw->>'$.currency') = lower(c._raw->>'$.currency') THEN (b._raw->>'$.fee')::BIGINT END
        AS fee_minor,
    (c._raw->>'$.amount_refunded')::BIGINT AS refunded_minor,
    to_timestamp((c._raw->>'$.created')::BIGINT) AS paid_at
FROM raw_stripe.charges AS c
LEFT JOIN raw_stripe.balance_transactions AS b ON b._pk = c._raw->>'$.balance_transaction'
