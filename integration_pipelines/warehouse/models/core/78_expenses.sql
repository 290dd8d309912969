-- key: source_system, source_id
SELECT * FROM staging.expenses ORDER BY source_system, source_id
