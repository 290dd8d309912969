-- entity: refunds
-- requires: raw_square.payments
-- optional: raw_square.refunds
-- Every refund of a Square payment. The payment lists its refunds (`refund_ids`, and only their total in
-- `refunded_money`); each refund's own amount, status and date are the PaymentRefund's (raw_square.refunds, read
-- per day of creation, and landed by `refund.*` webhooks). So: a refund id found there is that refund, at its own
-- amount on its own date; a listed id not read yet is a row whose amount is not known (null, never booked at a
-- guessed amount) unless it is the payment's only refund (then it is the total); a total without ids is one row
-- for the payment. Status: COMPLETED → succeeded, REJECTED and FAILED → failed, anything else (PENDING) → pending: never
-- booked before Square says the money went back.
WITH refunded AS (
    SELECT _pk, _raw, coalesce(CAST(_raw->'$.refund_ids' AS VARCHAR[]), []) AS ids
    FROM raw_square.payments
    WHERE coalesce((_raw->>'$.refunded_money.amount')::BIGINT, 0) > 0
),
each_refund AS (
    SELECT *, unnest(CASE WHEN len(ids) > 0 THEN ids ELSE [NULL::VARCHAR] END) AS refund_id FROM refunded
),
from_payments AS (
    SELECT 'square' AS source_system,
           coalesce(e.refund_id, e._pk || ':refunded') AS source_id,
           e._pk AS payment_source_id,
           'succeeded' AS status,
           e._raw->>'$.refunded_money.currency' AS currency,
           CASE WHEN len(e.ids) <= 1 THEN (e._raw->>'$.refunded_money.amount')::BIGINT END AS amount_minor,
           (e._raw->>'$.updated_at')::TIMESTAMPTZ AS refunded_at
    FROM each_refund AS e
    WHERE e.refund_id IS NULL OR e.refund_id NOT IN (SELECT _pk FROM raw_square.refunds)
)
SELECT 'square' AS source_system,
       _pk AS source_id,
       _raw->>'$.payment_id' AS payment_source_id,
       CASE _raw->>'$.status' WHEN 'COMPLETED' THEN 'succeeded' WHEN 'REJECTED' THEN 'failed'
            WHEN 'FAILED' THEN 'failed' ELSE 'pending' END AS status,
       _raw->>'$.amount_money.currency' AS currency,
       (_raw->>'$.amount_money.amount')::BIGINT AS amount_minor,
       (_raw->>'$.created_at')::TIMESTAMPTZ AS refunded_at
FROM raw_square.refunds
UNION ALL BY NAME
SELECT * FROM from_payments
