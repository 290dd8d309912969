-- entity: refunds
-- requires: raw_stripe.refunds
-- Every Stripe refund object: a second partial refund of a charge is a second row with its own amount and date.
SELECT
    'stripe' AS source_system,
    _pk AS source_id,
    _raw->>'$.charge' AS payment_source_id,
    CASE _raw->>'$.status' WHEN 'succeeded' THEN 'succeeded' WHEN 'failed' THEN 'failed'
         WHEN 'canceled' THEN 'canceled' ELSE 'pending' END AS status,
    upper(_raw->>'$.currency') AS currency,
    (_raw->>'$.amount')::BIGINT AS amount_minor,
    to_timestamp((_raw->>'$.created')::BIGINT) AS refunded_at
FROM raw_stripe.refunds
