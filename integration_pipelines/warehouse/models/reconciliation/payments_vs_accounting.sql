-- Processor payments (Stripe, Square ...) against the payments recorded in the books of record (QuickBooks, Xero
-- ...), each card payment against the books payment that records it (core.payment_matches), so installments,
-- deposits and one charge for several invoices match line by line. One row per disagreement, naming both sides.
-- finding: matched | in_transit (recent, not booked yet) | missing_in_accounting | amount_mismatch |
--          currency_mismatch | invoice_mismatch (booked on other invoices) | duplicate_in_books (booked twice) |
--          possible_duplicate_in_books (an unlinked books payment equal to an already booked card payment) |
--          ambiguous_match (several books payments could record it) | ambiguous_invoice (its invoice number exists
--          in the books of several entities in that currency) | invoice_already_paid (the books settled its
--          invoices with other money: the customer paid twice, a refund or credit is due) | invoice_is_draft (paid
--          by card, but its invoice is still a draft in the books, which take no payment on drafts) | missing_in_source (the processor's id is named in
--          the books, but the processor has no such payment)
WITH processor AS (
    SELECT * FROM core.payments WHERE kind = 'processor' AND status IN ('succeeded', 'refunded')
),
allocations AS (
    SELECT * FROM core.payment_allocations WHERE match_status = 'matched' AND on_books_of_record
),
sets AS (
    SELECT source_system, payment_source_id, list_sort(list(DISTINCT invoice_system || '/' || invoice_id)) AS invoices,
           string_agg(DISTINCT reference, ' ') AS reference
    FROM allocations GROUP BY ALL
),
books AS (
    SELECT p.source_system, p.source_id, p.amount_minor, p.currency, p.paid_at, s.invoices, coalesce(s.reference, '')
           AS reference
    FROM core.payments p JOIN sets s ON s.source_system = p.source_system AND s.payment_source_id = p.source_id
    WHERE p.kind = 'accounting' AND p.status = 'succeeded'
),
invoice_problem AS (  -- the worst matching problem among a processor payment's invoices
    SELECT a.source_system, a.payment_source_id,
           CASE WHEN bool_or(a.match_status = 'ambiguous') THEN 'ambiguous_invoice'
                WHEN bool_or(a.match_status = 'currency_mismatch') THEN 'currency_mismatch'
                WHEN bool_and(a.on_books_of_record AND i.balance_minor = 0) THEN 'invoice_already_paid'
                WHEN bool_or(a.on_books_of_record AND i.status = 'draft') THEN 'invoice_is_draft' END AS problem,
           list_sort(list(DISTINCT a.invoice_system || '/' || a.invoice_id) FILTER (WHERE a.invoice_id IS NOT NULL))
               AS invoices
    FROM core.payment_allocations a
    LEFT JOIN core.invoices i ON i.source_system = a.invoice_system AND i.source_id = a.invoice_id
    WHERE a.kind = 'processor' GROUP BY ALL
),
linked AS (  -- a decided match: one row per processor payment, with the books side summed
    SELECT processor_system, processor_payment_id, any_value(matched_by) AS matched_by,
           count(*) AS books_count, sum(books_amount_minor) AS books_amount_minor,
           min(books_currency) AS books_currency, min(books_system) AS books_system,
           string_agg(books_payment_id, ',' ORDER BY books_payment_id) AS books_payment_id,
           list_sort(list_distinct(flatten(list(books_invoices)))) = any_value(processor_invoices) AS same_invoices
    FROM core.payment_matches WHERE matched_by <> 'ambiguous' GROUP BY ALL
),
ambiguous AS (
    SELECT processor_system, processor_payment_id, count(*) AS candidates,
           string_agg(books_payment_id, ',' ORDER BY books_payment_id) AS books_payment_id, min(books_system)
               AS books_system
    FROM core.payment_matches WHERE matched_by = 'ambiguous' GROUP BY ALL
),
unlinked_books AS (
    SELECT b.* FROM books b
    WHERE NOT EXISTS (SELECT 1 FROM core.payment_matches m WHERE m.books_system = b.source_system
                      AND m.books_payment_id = b.source_id)
),
unlinked_processor AS (
    SELECT p.*, coalesce(ip.invoices, []) AS invoices, ip.problem
    FROM processor p LEFT JOIN invoice_problem ip ON ip.source_system = p.source_system
                                                 AND ip.payment_source_id = p.source_id
    WHERE NOT EXISTS (SELECT 1 FROM core.payment_matches m WHERE m.processor_system = p.source_system
                      AND m.processor_payment_id = p.source_id)
),
short_or_over AS (  -- the only unlinked card payment and the only unlinked books payment on the same invoices
    SELECT p.source_system AS processor_system, p.source_id AS processor_payment_id,
           b.source_system AS books_system, b.source_id AS books_payment_id, b.amount_minor AS books_amount_minor,
           b.currency AS books_currency,
           count(*) OVER (PARTITION BY p.source_system, p.source_id) AS per_processor,
           count(*) OVER (PARTITION BY b.source_system, b.source_id) AS per_books
    FROM unlinked_processor p JOIN unlinked_books b ON b.invoices = p.invoices AND len(p.invoices) > 0
    WHERE p.problem IS NULL OR p.problem = 'invoice_already_paid'  -- settled by a books payment of another amount
),
pairs AS (SELECT * FROM short_or_over WHERE per_processor = 1 AND per_books = 1)
SELECT CASE WHEN l.books_count > 1 AND l.books_amount_minor > p.amount_minor THEN 'duplicate_in_books'
            WHEN l.books_currency <> p.currency THEN 'currency_mismatch'
            WHEN NOT l.same_invoices THEN 'invoice_mismatch'
            WHEN l.books_amount_minor <> p.amount_minor THEN 'amount_mismatch'
            ELSE 'matched' END AS finding,
       p.source_system AS processor_system, p.source_id AS processor_payment_id,
       p.amount_minor AS processor_amount_minor, p.currency AS processor_currency,
       l.books_system, l.books_payment_id, l.books_amount_minor, l.books_currency, l.matched_by,
       l.books_amount_minor - p.amount_minor AS difference_minor, p.invoice_system, p.invoice_id, p.paid_at
FROM processor p JOIN linked l ON l.processor_system = p.source_system AND l.processor_payment_id = p.source_id
UNION ALL BY NAME
SELECT 'ambiguous_match' AS finding, p.source_system AS processor_system, p.source_id AS processor_payment_id,
       p.amount_minor AS processor_amount_minor, p.currency AS processor_currency,
       a.books_system, a.books_payment_id, p.invoice_system, p.invoice_id, p.paid_at
FROM processor p JOIN ambiguous a ON a.processor_system = p.source_system AND a.processor_payment_id = p.source_id
UNION ALL BY NAME
SELECT CASE WHEN x.books_payment_id IS NOT NULL THEN 'amount_mismatch'
            WHEN p.problem IS NOT NULL THEN p.problem
            WHEN p.paid_at >= now() - INTERVAL 2 DAY THEN 'in_transit'
            ELSE 'missing_in_accounting' END AS finding,
       p.source_system AS processor_system, p.source_id AS processor_payment_id,
       p.amount_minor AS processor_amount_minor, p.currency AS processor_currency,
       x.books_system, x.books_payment_id, x.books_amount_minor, x.books_currency,
       x.books_amount_minor - p.amount_minor AS difference_minor, p.invoice_system, p.invoice_id, p.paid_at
FROM unlinked_processor p LEFT JOIN pairs x ON x.processor_system = p.source_system
                                          AND x.processor_payment_id = p.source_id
UNION ALL BY NAME
SELECT 'possible_duplicate_in_books' AS finding, m.processor_system, m.processor_payment_id,
       m.processor_amount_minor, m.processor_currency,
       b.source_system AS books_system, b.source_id AS books_payment_id, b.amount_minor AS books_amount_minor,
       b.currency AS books_currency, b.amount_minor AS difference_minor, b.paid_at
FROM unlinked_books b
JOIN core.payment_matches m ON m.matched_by <> 'ambiguous' AND m.books_invoices = b.invoices
                           AND m.processor_amount_minor = b.amount_minor AND m.processor_currency = b.currency
WHERE NOT EXISTS (SELECT 1 FROM pairs x WHERE x.books_system = b.source_system AND x.books_payment_id = b.source_id)
UNION ALL BY NAME
SELECT 'missing_in_source' AS finding, b.source_system AS books_system, b.source_id AS books_payment_id,
       b.amount_minor AS books_amount_minor, b.currency AS books_currency, b.amount_minor AS difference_minor,
       b.paid_at
FROM unlinked_books b
WHERE regexp_matches(b.reference, '\b(ch|py)_[A-Za-z0-9]+')
  AND NOT EXISTS (SELECT 1 FROM pairs x WHERE x.books_system = b.source_system AND x.books_payment_id = b.source_id)
ORDER BY finding, processor_system, processor_payment_id, books_payment_id
