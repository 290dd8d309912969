-- key: golden_id
-- The legal entity that issues a customer's new documents, and the books it keeps them in: where S4 invoices a won
-- deal and S5 a billing milestone. Neither CRM nor the PM tool carries an entity field, so the rule is:
--   1. the golden customer's country (core.customers.country, ISO alpha-2) matched to an entity's `country` in the
--      legal-entities file (ref.legal_entities; the first in file order if two share a country);
--   2. else the group's default entity: the first in the legal-entities file.
-- books_system: the entity's books of record, the first `books` entry of its legal-entities entry.
WITH entity_order AS (
    SELECT e.legal_entity, e.country, e.books_system, min(b.precedence) AS precedence
    FROM ref.legal_entities AS e
    LEFT JOIN ref.entity_books AS b ON b.legal_entity = e.legal_entity
    GROUP BY ALL
),
by_country AS (
    SELECT country, arg_min(legal_entity, precedence) AS legal_entity
    FROM entity_order
    WHERE country IS NOT NULL
    GROUP BY country
),
default_entity AS (
    SELECT arg_min(legal_entity, precedence) AS legal_entity FROM entity_order
),
chosen AS (
    SELECT c.golden_id, coalesce(bc.legal_entity, (SELECT legal_entity FROM default_entity)) AS legal_entity
    FROM core.customers AS c
    LEFT JOIN by_country AS bc ON bc.country = c.country
)
SELECT chosen.golden_id, chosen.legal_entity, e.books_system
FROM chosen
JOIN entity_order AS e ON e.legal_entity = chosen.legal_entity
ORDER BY chosen.golden_id
