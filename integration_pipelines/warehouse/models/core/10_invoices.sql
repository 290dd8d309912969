-- key: source_system, source_id
-- Every invoice with its golden customer and the legal entity that issued it (by the customer's country,
-- ref.legal_entities). source_category tells accounting invoices (the books) from billing-system copies;
-- is_books_of_record marks the copy in the entity's own accounting system (ref.legal_entities.books_system),
-- or in any accounting system while that one has not been extracted, so totals count each invoice once.
SELECT i.*,
       x.golden_id AS golden_customer_id,
       coalesce(le.legal_entity, 'Unassigned') AS legal_entity,
       s.category AS source_category,
       s.category = 'accounting' AND (
           i.source_system = le.books_system
           OR le.books_system IS NULL
           OR NOT EXISTS (SELECT 1 FROM staging.invoices b WHERE b.source_system = le.books_system)
       ) AS is_books_of_record
FROM staging.invoices AS i
LEFT JOIN core.customer_xref AS x ON x.source_system = i.source_system AND x.source_id = i.customer_source_id
LEFT JOIN core.customers AS c ON c.golden_id = x.golden_id
LEFT JOIN ref.legal_entities AS le ON le.country = c.country
LEFT JOIN ref.systems AS s ON s.name = i.source_system
ORDER BY i.source_system, i.source_id
