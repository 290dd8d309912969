-- key: source_system, source_id
SELECT * FROM staging.products ORDER BY source_system, source_id
