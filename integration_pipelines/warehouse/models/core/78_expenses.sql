-- key: source_system, source_id
-- Every expense receipt with the legal entity whose books it belongs in (S7), by this rule:
--   1. the employee's email domain matched to an entity's own email domains (ref.intercompany_customers,
--      kind email_domain: the legal-entities file's `intercompany.email_domains`, the domains the group's staff of
--      that company write from);
--   2. else the one entity whose functional currency is the receipt's currency;
--   3. else none (legal_entity and books_system NULL): the receipt is booked nowhere, rather than guessing which
--      company reimburses it, and is a `no_company` finding of reconciliation/expenses_without_books.
-- books_system: that entity's books of record (ref.legal_entities.books_system).
WITH by_domain AS (
    SELECT value AS domain, min(legal_entity) AS legal_entity
    FROM ref.intercompany_customers
    WHERE kind = 'email_domain'
    GROUP BY value HAVING count(DISTINCT legal_entity) = 1
),
by_currency AS (
    SELECT functional_currency AS currency, min(legal_entity) AS legal_entity
    FROM ref.legal_entities
    GROUP BY functional_currency HAVING count(*) = 1
)
SELECT x.*, coalesce(d.legal_entity, c.legal_entity) AS legal_entity, e.books_system
FROM staging.expenses AS x
LEFT JOIN by_domain AS d ON d.domain = split_part(x.employee, '@', 2)
LEFT JOIN by_currency AS c ON c.currency = x.currency
LEFT JOIN ref.legal_entities AS e ON e.legal_entity = coalesce(d.legal_entity, c.legal_entity)
ORDER BY x.source_system, x.source_id
