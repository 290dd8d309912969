-- entity: refunds
-- requires: raw_square.payments
-- Square reports refunds on the payment only: `refund_ids` and the total `refunded_money` (the connector reads no
-- PaymentRefund objects). One refund id: that refund is the total. Several: each id is a row whose amount is not
-- known (null, so it is never booked at a guessed amount). A total without ids: one row for the payment. The
-- refund's date is the payment's last change (`updated_at`), which a refund moves.
WITH refunded AS (
    SELECT _pk, _raw, coalesce(CAST(_raw->'$.refund_ids' AS VARCHAR[]), []) AS ids
    FROM raw_square.payments
    WHERE coalesce((_raw->>'$.refunded_money.amount')::BIGINT, 0) > 0
),
each_refund AS (
    SELECT *, unnest(CASE WHEN len(ids) > 0 THEN ids ELSE [NULL::VARCHAR] END) AS refund_id FROM refunded
)
SELECT 'square' AS source_system,
       coalesce(refund_id, _pk || ':refunded') AS source_id,
       _pk AS payment_source_id,
       'succeeded' AS status,
       _raw->>'$.refunded_money.currency' AS currency,
       CASE WHEN len(ids) <= 1 THEN (_raw->>'$.refunded_money.amount')::BIGINT END AS amount_minor,
       (_raw->>'$.updated_at')::TIMESTAMPTZ AS refunded_at
FROM each_refund
