-- Invoices paid at the processor but still open in the books: the payment never reached accounting.
SELECT 'paid_in_processor_open_in_books' AS finding,
       i.source_system AS books_system, i.source_id AS invoice_id, i.invoice_number,
       i.balance_minor, i.currency,
       p.source_system AS processor_system, p.source_id AS processor_payment_id, p.amount_minor, p.paid_at
FROM core.invoices i
JOIN core.payments p ON p.kind = 'processor' AND p.invoice_system = i.source_system AND p.invoice_id = i.source_id
WHERE i.is_books_of_record AND i.balance_minor > 0 AND p.status = 'succeeded'
ORDER BY i.source_system, i.source_id, p.source_id
