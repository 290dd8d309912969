-- key: source_system, source_id
SELECT o.*, x.golden_id AS golden_customer_id
FROM staging.orders AS o
LEFT JOIN core.customer_xref AS x ON x.source_system = o.source_system AND x.source_id = o.customer_source_id
ORDER BY o.source_system, o.source_id
