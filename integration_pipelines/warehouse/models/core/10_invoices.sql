-- key: source_system, source_id
-- Every invoice with its golden customer and the legal entity that issued it, from the books that hold it: the
-- first entry of the legal-entities file (ref.entity_books, in file order) whose system, books id and currency
-- match the row. Nothing here looks at the customer's country. is_books_of_record marks the copy that counts: a
-- matched row, unless the same entity holds the same invoice (number and currency) in a books listed before
-- (the sandbox's QuickBooks, Xero and NetSuite mirror each other; a business may have migrated books). A row no
-- books entry claims (a billing-system copy such as Stripe's) takes the entity of the counted invoice with its
-- number and currency, when exactly one has them, and is never counted.
-- is_intercompany: the customer is a group company (ref.intercompany_customers: by its id in this system, or by
-- the email domain of its golden customer); counterparty_entity names it.
WITH claimed AS (
    SELECT i.source_system, i.source_id,
           arg_min(b.legal_entity, b.precedence) AS legal_entity, min(b.precedence) AS precedence
    FROM staging.invoices AS i
    JOIN ref.entity_books AS b
      ON b.books_system = i.source_system
     AND (b.books_id IS NULL OR b.books_id = i.books_id)
     AND (b.currency IS NULL OR b.currency = i.currency)
    GROUP BY ALL
),
ranked AS (
    SELECT i.*, c.legal_entity, c.precedence,
           c.precedence IS NOT NULL AND (
               i.invoice_number IS NULL OR c.precedence = min(c.precedence) OVER (
                   PARTITION BY c.legal_entity, i.invoice_number, i.currency)
           ) AS is_books_of_record
    FROM staging.invoices AS i
    LEFT JOIN claimed AS c USING (source_system, source_id)
),
counted AS (
    SELECT invoice_number, currency, min(legal_entity) AS legal_entity
    FROM ranked WHERE is_books_of_record AND invoice_number IS NOT NULL
    GROUP BY ALL HAVING count(DISTINCT legal_entity) = 1
),
customers AS (
    SELECT x.source_system, x.source_id, x.golden_id,
           lower(split_part(c.email, '@', 2)) AS email_domain, lower(c.company_domain) AS company_domain
    FROM core.customer_xref AS x
    LEFT JOIN core.customers AS c ON c.golden_id = x.golden_id
),
group_customers AS (
    SELECT r.source_system, r.source_id, min(g.legal_entity) AS counterparty_entity
    FROM ranked AS r
    LEFT JOIN customers AS cu ON cu.source_system = r.source_system AND cu.source_id = r.customer_source_id
    JOIN ref.intercompany_customers AS g
      ON (g.kind = 'customer' AND g.books_system = r.source_system AND g.value = r.customer_source_id)
      OR (g.kind = 'email_domain' AND g.value IN (cu.email_domain, cu.company_domain))
    GROUP BY ALL
)
SELECT r.* EXCLUDE (legal_entity, precedence, is_books_of_record),
       cu.golden_id AS golden_customer_id,
       coalesce(r.legal_entity, n.legal_entity, 'Unassigned') AS legal_entity,
       s.category AS source_category,
       r.is_books_of_record,
       g.counterparty_entity IS NOT NULL AS is_intercompany,
       g.counterparty_entity
FROM ranked AS r
LEFT JOIN customers AS cu ON cu.source_system = r.source_system AND cu.source_id = r.customer_source_id
LEFT JOIN counted AS n ON r.legal_entity IS NULL AND n.invoice_number = r.invoice_number AND n.currency = r.currency
LEFT JOIN ref.systems AS s ON s.name = r.source_system
LEFT JOIN group_customers AS g ON g.source_system = r.source_system AND g.source_id = r.source_id
ORDER BY r.source_system, r.source_id
