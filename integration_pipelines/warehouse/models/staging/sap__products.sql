-- entity: products
-- requires: raw_sap.products
SELECT 'sap' AS source_system, _pk AS source_id, _raw->>'$.Product' AS sku,
       coalesce(_raw->>'$.to_Description.results[0].ProductDescription', _raw->>'$.Product') AS name,
       NULL AS currency, NULL::BIGINT AS unit_price_minor,
       to_timestamp(CAST(regexp_extract(_raw->>'$.LastChangeDateTime', '\d+') AS BIGINT) / 1000) AS updated_at
FROM raw_sap.products
