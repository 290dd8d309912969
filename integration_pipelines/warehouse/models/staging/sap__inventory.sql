-- entity: inventory
-- requires: raw_sap.material_stock
SELECT 'sap' AS source_system, _pk AS source_id, _raw->>'$.Material' AS sku,
       concat_ws('/', _raw->>'$.Plant', _raw->>'$.StorageLocation') AS location,
       (_raw->>'$.MatlWrhsStkQtyInMatlBaseUnit')::DOUBLE AS quantity, NULL::TIMESTAMPTZ AS updated_at
FROM raw_sap.material_stock
WHERE _raw->>'$.InventoryStockType' = '01'
