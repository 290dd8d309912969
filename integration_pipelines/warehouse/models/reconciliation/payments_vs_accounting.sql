-- Processor payments (Stripe, Square ...) against the payments recorded in the books (QuickBooks, Xero ...),
-- per accounting invoice. One row per finding, naming the records on both sides so a person can fix it.
-- finding: matched | missing_in_accounting | in_transit | amount_mismatch | currency_mismatch | duplicate |
--          missing_in_source
WITH processor AS (
    SELECT * FROM core.payments WHERE kind = 'processor' AND status IN ('succeeded', 'refunded')
),
books AS (  -- payments recorded against the books of record (not a second ledger's copy)
    SELECT p.* FROM core.payments p
    JOIN core.invoices i ON i.source_system = p.invoice_system AND i.source_id = p.invoice_id
    WHERE p.kind = 'accounting' AND i.is_books_of_record
),
per_invoice AS (
    SELECT invoice_system, invoice_id, count(*) AS processor_count
    FROM processor WHERE invoice_id IS NOT NULL GROUP BY ALL
),
paired AS (
    SELECT p.source_system AS processor_system, p.source_id AS processor_payment_id,
           p.amount_minor AS processor_amount_minor, p.currency AS processor_currency, p.paid_at,
           p.invoice_system, p.invoice_id, p.invoice_status,
           b.source_system AS books_system, b.source_id AS books_payment_id,
           b.amount_minor AS books_amount_minor, b.currency AS books_currency,
           coalesce(pi.processor_count, 0) AS processor_count
    FROM processor p
    LEFT JOIN books b ON b.invoice_system = p.invoice_system AND b.invoice_id = p.invoice_id
    LEFT JOIN per_invoice pi ON pi.invoice_system = p.invoice_system AND pi.invoice_id = p.invoice_id
)
SELECT
    CASE WHEN invoice_status <> 'matched' OR books_payment_id IS NULL THEN
              CASE WHEN paid_at >= now() - INTERVAL 2 DAY THEN 'in_transit' ELSE 'missing_in_accounting' END
         WHEN processor_count > 1 THEN 'duplicate'
         WHEN processor_currency <> books_currency THEN 'currency_mismatch'
         WHEN processor_amount_minor <> books_amount_minor THEN 'amount_mismatch'
         ELSE 'matched' END AS finding,
    processor_system, processor_payment_id, processor_amount_minor, processor_currency,
    books_system, books_payment_id, books_amount_minor, books_currency,
    invoice_system, invoice_id,
    coalesce(books_amount_minor, 0) - coalesce(processor_amount_minor, 0) AS difference_minor,
    paid_at
FROM paired
UNION ALL BY NAME
SELECT 'missing_in_source' AS finding,
       b.source_system AS books_system, b.source_id AS books_payment_id, b.amount_minor AS books_amount_minor,
       b.currency AS books_currency, b.invoice_system, b.invoice_id, b.amount_minor AS difference_minor,
       b.paid_at
FROM books b
WHERE EXISTS (SELECT 1 FROM ref.systems s WHERE s.category = 'payments'
              AND EXISTS (SELECT 1 FROM core.payments x WHERE x.source_system = s.name))
  AND NOT EXISTS (SELECT 1 FROM processor p WHERE p.invoice_system = b.invoice_system
                  AND p.invoice_id = b.invoice_id)
ORDER BY finding, processor_system, processor_payment_id, books_payment_id
