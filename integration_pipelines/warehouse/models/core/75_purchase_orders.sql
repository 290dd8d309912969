-- key: source_system, source_id
SELECT * FROM staging.purchase_orders ORDER BY source_system, source_id
