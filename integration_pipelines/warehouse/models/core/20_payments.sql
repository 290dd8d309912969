-- key: source_system, source_id
-- Payments with their golden customer and the accounting invoice they settle: first by the accounting invoice
-- number the payment carries (processor metadata), then by an invoice id in the payment's own system.
-- invoice_status: matched | no_invoice (the payment names none) | invoice_not_found (it names one we lack).
WITH accounting_by_number AS (
    SELECT invoice_number,
           arg_min(source_system, source_system || source_id) AS source_system,
           arg_min(source_id, source_system || source_id) AS source_id
    FROM core.invoices
    WHERE is_books_of_record AND invoice_number IS NOT NULL
    GROUP BY invoice_number
)
SELECT p.*,
       x.golden_id AS golden_customer_id,
       coalesce(le.legal_entity, 'Unassigned') AS legal_entity,
       coalesce(n.source_system, same.source_system) AS invoice_system,
       coalesce(n.source_id, same.source_id) AS invoice_id,
       CASE WHEN n.source_id IS NOT NULL OR same.source_id IS NOT NULL THEN 'matched'
            WHEN p.invoice_number IS NULL AND p.invoice_source_id IS NULL THEN 'no_invoice'
            ELSE 'invoice_not_found' END AS invoice_status
FROM staging.payments AS p
LEFT JOIN core.customer_xref AS x ON x.source_system = p.source_system AND x.source_id = p.customer_source_id
LEFT JOIN core.customers AS c ON c.golden_id = x.golden_id
LEFT JOIN ref.legal_entities AS le ON le.country = c.country
LEFT JOIN accounting_by_number AS n ON n.invoice_number = p.invoice_number
LEFT JOIN core.invoices AS same ON same.source_system = p.source_system AND same.source_id = p.invoice_source_id
ORDER BY p.source_system, p.source_id
