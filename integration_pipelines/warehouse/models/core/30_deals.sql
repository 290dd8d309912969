-- key: source_system, source_id
SELECT d.*, x.golden_id AS golden_customer_id
FROM staging.deals AS d
LEFT JOIN core.customer_xref AS x ON x.source_system = d.source_system AND x.source_id = d.customer_source_id
ORDER BY d.source_system, d.source_id
