-- key: processor_system, processor_payment_id, books_system, books_payment_id
-- Which payment in the books records each processor payment (a card charge). First the books payment whose memo or
-- reference names the processor's payment id (our own syncs write it there; careful bookkeepers type it). Else the
-- books payment with the same amount and currency on the same invoice(s) that names no processor payment: when it
-- is the only such candidate on both sides it is `same_amount`; several candidates are `ambiguous`, one row per
-- candidate, for a person to decide (a sync never writes on a guess).
WITH allocations AS (
    SELECT * FROM core.payment_allocations WHERE match_status = 'matched' AND on_books_of_record
),
invoice_sets AS (
    SELECT source_system, payment_source_id,
           list_sort(list(DISTINCT invoice_system || '/' || invoice_id)) AS invoices,
           string_agg(DISTINCT reference, ' ') AS reference
    FROM allocations GROUP BY ALL
),
payments AS (
    SELECT p.source_system, p.source_id, p.kind, p.currency, p.amount_minor,
           coalesce(s.invoices, []) AS invoices, coalesce(s.reference, '') AS reference
    FROM core.payments p
    LEFT JOIN invoice_sets s ON s.source_system = p.source_system AND s.payment_source_id = p.source_id
    WHERE (p.kind = 'processor' AND p.status IN ('succeeded', 'refunded'))
       OR (p.kind = 'accounting' AND p.status = 'succeeded' AND s.invoices IS NOT NULL)
),
processor AS (SELECT * FROM payments WHERE kind = 'processor'),
books AS (SELECT * FROM payments WHERE kind = 'accounting'),
referenced AS (
    SELECT pr.source_system AS processor_system, pr.source_id AS processor_payment_id,
           b.source_system AS books_system, b.source_id AS books_payment_id, 'referenced' AS matched_by
    FROM processor pr JOIN books b ON contains(b.reference, pr.source_id)
),
unreferenced AS (
    SELECT * FROM processor pr WHERE NOT EXISTS (
        SELECT 1 FROM referenced r WHERE r.processor_system = pr.source_system
                                     AND r.processor_payment_id = pr.source_id)
),
unnamed AS (
    SELECT * FROM books b WHERE NOT EXISTS (
        SELECT 1 FROM referenced r WHERE r.books_system = b.source_system AND r.books_payment_id = b.source_id)
),
by_amount AS (
    SELECT pr.source_system AS processor_system, pr.source_id AS processor_payment_id,
           b.source_system AS books_system, b.source_id AS books_payment_id,
           count(*) OVER (PARTITION BY pr.source_system, pr.source_id) AS per_processor,
           count(*) OVER (PARTITION BY b.source_system, b.source_id) AS per_books
    FROM unreferenced pr
    JOIN unnamed b ON b.invoices = pr.invoices AND len(pr.invoices) > 0 AND b.currency = pr.currency
                  AND b.amount_minor = pr.amount_minor
),
matched AS (
    SELECT * FROM referenced
    UNION ALL
    SELECT processor_system, processor_payment_id, books_system, books_payment_id,
           CASE WHEN per_processor = 1 AND per_books = 1 THEN 'same_amount' ELSE 'ambiguous' END
    FROM by_amount
)
SELECT m.processor_system, m.processor_payment_id, m.books_system, m.books_payment_id, m.matched_by,
       pr.amount_minor AS processor_amount_minor, pr.currency AS processor_currency, pr.invoices AS processor_invoices,
       b.amount_minor AS books_amount_minor, b.currency AS books_currency, b.invoices AS books_invoices
FROM matched m
JOIN processor pr ON pr.source_system = m.processor_system AND pr.source_id = m.processor_payment_id
JOIN books b ON b.source_system = m.books_system AND b.source_id = m.books_payment_id
ORDER BY m.processor_system, m.processor_payment_id, m.books_system, m.books_payment_id
