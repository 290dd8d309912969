-- entity: inventory
-- requires: raw_legacy_erp.stock_levels
-- One row per SKU and warehouse (MAIN, EAST, WEST …): the on-hand count, as the other ERPs' rows are (the ERP
-- also reports `reserved` and `available` = onHand - reserved).
SELECT 'legacy_erp' AS source_system, _pk AS source_id, _raw->>'$.sku' AS sku,
       _raw->>'$.warehouse' AS location, (_raw->>'$.onHand')::DOUBLE AS quantity,
       (_raw->>'$.updatedAt')::TIMESTAMPTZ AS updated_at
FROM raw_legacy_erp.stock_levels
