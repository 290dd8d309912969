-- entity: products
-- requires: raw_xero.items
SELECT 'xero' AS source_system, _pk AS source_id, _raw->>'$.Code' AS sku, _raw->>'$.Name' AS name,
       NULL AS currency, to_minor(_raw->>'$.SalesDetails.UnitPrice', 'USD') AS unit_price_minor,
       to_timestamp(CAST(regexp_extract(_raw->>'$.UpdatedDateUTC', '\d+') AS BIGINT) / 1000) AS updated_at
FROM raw_xero.items
