-- key: source_system, source_id
-- Each allocation with the invoice it pays. A payment's own invoice id wins (a QuickBooks payment line names its
-- invoice in the same books; on_books_of_record says whether those are the entity's books of record); otherwise the invoice number is looked up in the books of record within the
-- payment's currency, since two legal entities may issue the same number. A number that several books hold in that
-- currency is ambiguous: it matches nothing and is reported, never guessed.
-- match_status: matched | ambiguous | currency_mismatch (the number exists, in another currency only) |
--               invoice_not_found | no_invoice.
-- allocated_minor: the amount applied; a charge for several invoices is applied to each matched invoice's total.
WITH books AS (
    SELECT source_system, source_id, invoice_number, currency, total_minor
    FROM core.invoices WHERE is_books_of_record
),
same_system AS (
    SELECT a.source_system, a.source_id, i.source_system AS invoice_system, i.source_id AS invoice_id,
           i.total_minor, i.is_books_of_record
    FROM staging.payment_allocations a
    JOIN core.invoices i ON i.source_system = a.source_system AND i.source_id = a.invoice_source_id
),
by_number AS (
    SELECT a.source_system, a.source_id, count(*) AS candidates,
           min(b.source_system) AS invoice_system, min(b.source_id) AS invoice_id, min(b.total_minor) AS total_minor
    FROM staging.payment_allocations a
    JOIN books b ON b.invoice_number = a.invoice_number AND b.currency = a.currency
    WHERE a.kind <> 'accounting'  -- a payment in the books is applied to an invoice of those books, by its id
    GROUP BY ALL
),
other_currency AS (
    SELECT DISTINCT a.source_system, a.source_id
    FROM staging.payment_allocations a
    JOIN books b ON b.invoice_number = a.invoice_number AND b.currency <> a.currency
    WHERE a.kind <> 'accounting'
),
resolved AS (  -- the invoice in the books of record first; an invoice of the payment's own system otherwise
    SELECT a.*,
           CASE WHEN s.is_books_of_record OR n.candidates = 1 THEN 'matched'
                WHEN n.candidates > 1 THEN 'ambiguous'
                WHEN s.invoice_id IS NOT NULL THEN 'matched'
                WHEN o.source_id IS NOT NULL THEN 'currency_mismatch'
                WHEN a.invoice_number IS NULL AND a.invoice_source_id IS NULL THEN 'no_invoice'
                ELSE 'invoice_not_found' END AS match_status,
           CASE WHEN s.is_books_of_record THEN s.invoice_system WHEN n.candidates = 1 THEN n.invoice_system
                WHEN n.candidates IS NULL THEN s.invoice_system END AS invoice_system,
           CASE WHEN s.is_books_of_record THEN s.invoice_id WHEN n.candidates = 1 THEN n.invoice_id
                WHEN n.candidates IS NULL THEN s.invoice_id END AS invoice_id,
           CASE WHEN s.is_books_of_record THEN s.total_minor WHEN n.candidates = 1 THEN n.total_minor
                WHEN n.candidates IS NULL THEN s.total_minor END AS invoice_total_minor,
           coalesce(s.is_books_of_record, false) OR n.candidates = 1 AS on_books_of_record
    FROM staging.payment_allocations a
    LEFT JOIN same_system s USING (source_system, source_id)
    LEFT JOIN by_number n USING (source_system, source_id)
    LEFT JOIN other_currency o USING (source_system, source_id)
)
SELECT r.source_system, r.source_id, r.payment_source_id, r.kind, r.invoice_number, r.currency, r.reference,
       r.match_status, r.invoice_system, r.invoice_id, coalesce(r.on_books_of_record, false) AS on_books_of_record,
       coalesce(r.amount_minor, r.invoice_total_minor, p.amount_minor) AS allocated_minor,
       p.status AS payment_status, p.amount_minor AS payment_amount_minor, p.paid_at
FROM resolved r
JOIN staging.payments p ON p.source_system = r.source_system AND p.source_id = r.payment_source_id
ORDER BY r.source_system, r.source_id
