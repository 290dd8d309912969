-- entity: subscriptions
-- requires: raw_square.subscriptions
-- optional: raw_square.subscription_plan_variations
-- Square's subscription names only its plan variation: the plan's name, price and cadence are the catalog's
-- (subscription_plan_variations), so until the catalog is read they are null. charged_through_date is the last day
-- billed: the next period starts the day after (for PENDING, on start_date). A cancel leaves an ACTIVE subscription
-- ACTIVE with a canceled_date at the end of the billed period. Square keeps no last-modified time on a subscription:
-- updated_at is the raw row's version (the webhook's time, or when a read first saw it so). Dates are days in UTC.
SELECT
    'square' AS source_system,
    s._pk AS source_id,
    s._raw->>'$.customer_id' AS customer_source_id,
    CASE s._raw->>'$.status'
        WHEN 'PENDING' THEN 'trialing'
        WHEN 'ACTIVE' THEN 'active'
        WHEN 'DEACTIVATED' THEN 'past_due'
        WHEN 'CANCELED' THEN 'canceled'
        WHEN 'PAUSED' THEN 'canceled'
        WHEN 'COMPLETED' THEN 'canceled'
        ELSE lower(s._raw->>'$.status') END AS status,
    s._raw->>'$.status' AS processor_status,
    v._raw->>'$.subscription_plan_variation_data.name' AS plan,
    s._raw->>'$.plan_variation_id' AS plan_id,
    coalesce(s._raw->>'$.price_override_money.currency',
             v._raw->>'$.subscription_plan_variation_data.phases[#-1].pricing.price_money.currency',
             v._raw->>'$.subscription_plan_variation_data.phases[#-1].recurring_price_money.currency') AS currency,
    coalesce((s._raw->>'$.price_override_money.amount')::BIGINT,
             (v._raw->>'$.subscription_plan_variation_data.phases[#-1].pricing.price_money.amount')::BIGINT,
             (v._raw->>'$.subscription_plan_variation_data.phases[#-1].recurring_price_money.amount')::BIGINT)
        AS amount_minor,
    CASE v._raw->>'$.subscription_plan_variation_data.phases[#-1].cadence'
        WHEN 'DAILY' THEN 'day' WHEN 'WEEKLY' THEN 'week' WHEN 'MONTHLY' THEN 'month' WHEN 'ANNUAL' THEN 'year'
        ELSE lower(v._raw->>'$.subscription_plan_variation_data.phases[#-1].cadence') END AS billing_interval,
    CASE WHEN s._raw->>'$.status' = 'PENDING' THEN timezone('UTC', (s._raw->>'$.start_date')::DATE::TIMESTAMP)
         WHEN s._raw->>'$.status' IN ('CANCELED', 'COMPLETED') THEN NULL
         ELSE timezone('UTC', ((s._raw->>'$.charged_through_date')::DATE + 1)::TIMESTAMP) END AS current_period_end,
    NULL::TIMESTAMPTZ AS trial_end,
    s._raw->>'$.status' = 'ACTIVE' AND (s._raw->>'$.canceled_date') IS NOT NULL AS cancel_at_period_end,
    timezone('UTC', (s._raw->>'$.canceled_date')::DATE::TIMESTAMP) AS canceled_at,
    (s._raw->>'$.created_at')::TIMESTAMPTZ AS created_at,
    s._version AS updated_at
FROM raw_square.subscriptions AS s
LEFT JOIN raw_square.subscription_plan_variations AS v ON v._pk = s._raw->>'$.plan_variation_id'
