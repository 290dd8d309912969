-- key: source_system, source_id
-- One row per subscription with its golden customer (core.customer_xref): the Stripe and Square subscribers are
-- resolved like every other customer record, so a subscription and the CRM contact meet on golden_customer_id.
SELECT s.*, x.golden_id AS golden_customer_id
FROM staging.subscriptions AS s
LEFT JOIN core.customer_xref AS x ON x.source_system = s.source_system AND x.source_id = s.customer_source_id
ORDER BY s.source_system, s.source_id
