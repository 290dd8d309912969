-- Invoices paid at the processor but still open in the books: more card money was applied to the invoice than the
-- books show as paid (total - balance), so a payment never reached accounting. Installments that the books record
-- one by one are not findings; one row per invoice, with both amounts.
WITH card AS (
    SELECT invoice_system, invoice_id, sum(allocated_minor) AS processor_paid_minor,
           string_agg(payment_source_id, ',' ORDER BY payment_source_id) AS processor_payment_ids,
           min(source_system) AS processor_system, max(paid_at) AS paid_at
    FROM core.payment_allocations
    WHERE kind = 'processor' AND match_status = 'matched' AND on_books_of_record AND payment_status = 'succeeded'
    GROUP BY ALL
)
SELECT 'paid_in_processor_open_in_books' AS finding,
       i.source_system AS books_system, i.source_id AS invoice_id, i.invoice_number,
       i.balance_minor, i.total_minor - i.balance_minor AS books_paid_minor, c.processor_paid_minor, i.currency,
       c.processor_system, c.processor_payment_ids AS processor_payment_id, c.paid_at
FROM core.invoices i
JOIN card c ON c.invoice_system = i.source_system AND c.invoice_id = i.source_id
WHERE i.is_books_of_record AND i.balance_minor > 0 AND c.processor_paid_minor > i.total_minor - i.balance_minor
ORDER BY i.source_system, i.source_id
