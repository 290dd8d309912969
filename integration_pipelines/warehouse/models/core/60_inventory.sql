-- key: source_system, source_id
-- Every system's stock records as they are: nothing is chosen or summed here. Which ERP's count a storefront gets
-- is the inventory syncs' decision (syncs/catalog/inventory_to_storefronts.py: one ERP of record per SKU, as
-- configured; a SKU its ERP of record holds twice at one location is refused there, not added up).
SELECT i.*, s.category AS source_category
FROM staging.inventory AS i LEFT JOIN ref.systems AS s ON s.name = i.source_system
ORDER BY i.source_system, i.source_id
