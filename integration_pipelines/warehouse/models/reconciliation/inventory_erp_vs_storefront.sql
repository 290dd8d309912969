-- ERP stock against storefront stock, per SKU: what the shop sells must be what the warehouse holds.
-- One row per SKU, ERP and storefront: stock_matched | stock_mismatch | missing_in_storefront.
WITH stock AS (
    SELECT source_system, source_category, sku, sum(quantity) AS quantity
    FROM core.inventory WHERE sku IS NOT NULL GROUP BY ALL
),
erp AS (SELECT * FROM stock WHERE source_category = 'erp'),
shop AS (SELECT * FROM stock WHERE source_category IN ('ecommerce', 'payments'))
SELECT CASE WHEN shop.quantity IS NULL THEN 'missing_in_storefront'
            WHEN shop.quantity = erp.quantity THEN 'stock_matched'
            ELSE 'stock_mismatch' END AS finding,
       erp.sku, erp.source_system AS erp_system, erp.quantity AS erp_quantity,
       shop.source_system AS storefront_system, shop.quantity AS storefront_quantity,
       coalesce(shop.quantity, 0) - erp.quantity AS difference
FROM erp
LEFT JOIN shop ON shop.sku = erp.sku
WHERE EXISTS (SELECT 1 FROM shop)
ORDER BY finding, erp.sku, erp.source_system, shop.source_system
