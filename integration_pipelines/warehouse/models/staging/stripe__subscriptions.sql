-- entity: subscriptions
-- requires: raw_stripe.subscriptions
-- Since API version 2025-03-31 the billing period is on each item (items.data[].current_period_end), no longer on
-- the subscription; the top-level field is read only when an older API version left it there. Stripe keeps no
-- last-modified time on a subscription: updated_at is the raw row's version, the time of the event that brought
-- the snapshot (Events API or webhook), or when a list read first saw it so.
SELECT
    'stripe' AS source_system,
    _pk AS source_id,
    _raw->>'$.customer' AS customer_source_id,
    CASE _raw->>'$.status'
        WHEN 'trialing' THEN 'trialing'
        WHEN 'active' THEN 'active'
        WHEN 'past_due' THEN 'past_due'
        WHEN 'unpaid' THEN 'past_due'
        WHEN 'incomplete' THEN 'past_due'
        WHEN 'paused' THEN 'past_due'
        WHEN 'canceled' THEN 'canceled'
        WHEN 'incomplete_expired' THEN 'canceled'
        ELSE lower(_raw->>'$.status') END AS status,
    _raw->>'$.status' AS processor_status,
    coalesce(_raw->>'$.items.data[0].price.nickname', _raw->>'$.items.data[0].price.lookup_key',
             _raw->>'$.items.data[0].price.id') AS plan,
    _raw->>'$.items.data[0].price.id' AS plan_id,
    upper(coalesce(_raw->>'$.currency', _raw->>'$.items.data[0].price.currency')) AS currency,
    (SELECT sum((item->>'$.price.unit_amount')::BIGINT * coalesce((item->>'$.quantity')::BIGINT, 1))
     FROM (SELECT unnest(CAST(json_extract(_raw, '$.items.data') AS JSON[])) AS item)) AS amount_minor,
    _raw->>'$.items.data[0].price.recurring.interval' AS billing_interval,
    to_timestamp(coalesce((_raw->>'$.items.data[0].current_period_end')::BIGINT,
                          (_raw->>'$.current_period_end')::BIGINT)) AS current_period_end,
    to_timestamp((_raw->>'$.trial_end')::BIGINT) AS trial_end,
    coalesce((_raw->>'$.cancel_at_period_end')::BOOLEAN, false) OR (_raw->>'$.cancel_at') IS NOT NULL
        AS cancel_at_period_end,
    to_timestamp((_raw->>'$.canceled_at')::BIGINT) AS canceled_at,
    to_timestamp((_raw->>'$.created')::BIGINT) AS created_at,
    _version AS updated_at
FROM raw_stripe.subscriptions
