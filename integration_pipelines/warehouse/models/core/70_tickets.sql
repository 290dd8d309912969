-- key: source_system, source_id
SELECT t.*, x.golden_id AS golden_customer_id
FROM staging.tickets AS t
LEFT JOIN core.customer_xref AS x ON x.source_system = t.source_system AND x.source_id = t.customer_source_id
ORDER BY t.source_system, t.source_id
