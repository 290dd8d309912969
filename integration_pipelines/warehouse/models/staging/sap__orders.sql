-- entity: orders
-- requires: raw_sap.sales_orders
SELECT 'sap' AS source_system, _pk AS source_id, _raw->>'$.SalesOrder' AS order_number,
       _raw->>'$.SoldToParty' AS customer_source_id, _raw->>'$.OverallSDProcessStatus' AS status,
       _raw->>'$.TransactionCurrency' AS currency,
       to_minor(_raw->>'$.TotalNetAmount', _raw->>'$.TransactionCurrency') AS total_minor,
       to_timestamp(CAST(regexp_extract(_raw->>'$.SalesOrderDate', '\d+') AS BIGINT) / 1000) AS ordered_at,
       to_timestamp(CAST(regexp_extract(_raw->>'$.LastChangeDateTime', '\d+') AS BIGINT) / 1000) AS updated_at
FROM raw_sap.sales_orders
