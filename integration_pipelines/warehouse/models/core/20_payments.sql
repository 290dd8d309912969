-- key: source_system, source_id
-- Payments with their golden customer and the invoice of the books of record they settle (the first invoice a
-- payment is applied to; core.payment_allocations has every one, matched within the payment's currency).
-- invoice_status: matched | ambiguous | currency_mismatch | invoice_not_found | no_invoice (see payment_allocations).
-- legal_entity: the entity that issued the invoice it settles (core.invoices), 'Unassigned' when none is known.
WITH first_allocation AS (
    SELECT source_system, payment_source_id,
           arg_min(invoice_system, source_id) AS invoice_system, arg_min(invoice_id, source_id) AS invoice_id,
           arg_min(match_status, source_id) AS invoice_status
    FROM core.payment_allocations
    GROUP BY ALL
)
SELECT p.*,
       x.golden_id AS golden_customer_id,
       coalesce(i.legal_entity, 'Unassigned') AS legal_entity,
       a.invoice_system,
       a.invoice_id,
       coalesce(a.invoice_status, CASE WHEN p.invoice_number IS NULL AND p.invoice_source_id IS NULL
                                       THEN 'no_invoice' ELSE 'invoice_not_found' END) AS invoice_status
FROM staging.payments AS p
LEFT JOIN core.customer_xref AS x ON x.source_system = p.source_system AND x.source_id = p.customer_source_id
LEFT JOIN first_allocation AS a ON a.source_system = p.source_system AND a.payment_source_id = p.source_id
LEFT JOIN core.invoices AS i ON i.source_system = a.invoice_system AND i.source_id = a.invoice_id
ORDER BY p.source_system, p.source_id
