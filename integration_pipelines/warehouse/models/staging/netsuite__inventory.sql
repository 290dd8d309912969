-- entity: inventory
-- requires: raw_netsuite.inventory_items
-- NetSuite's item-level quantityOnHand: the item's stock summed over its locations (the body field SuiteTalk
-- returns with bodyFieldsOnly; per-location quantities are the locationsList sublist, not read), hence no
-- location. Inactive items are left out: NetSuite refuses them on new transactions, so no shop sells them.
SELECT 'netsuite' AS source_system, _pk AS source_id, _raw->>'$.itemId' AS sku,
       NULL::VARCHAR AS location, (_raw->>'$.quantityOnHand')::DOUBLE AS quantity,
       (_raw->>'$.lastModifiedDate')::TIMESTAMPTZ AS updated_at
FROM raw_netsuite.inventory_items
WHERE coalesce((_raw->>'$.isInactive')::BOOLEAN, false) = false
