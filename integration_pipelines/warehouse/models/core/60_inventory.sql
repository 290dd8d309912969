-- key: source_system, source_id
SELECT i.*, s.category AS source_category
FROM staging.inventory AS i LEFT JOIN ref.systems AS s ON s.name = i.source_system
ORDER BY i.source_system, i.source_id
