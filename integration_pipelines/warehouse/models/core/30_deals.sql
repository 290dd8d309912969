-- key: source_system, source_id
-- Every CRM deal with its golden customer and the legal entity that issues its invoice, by this rule:
--   1. a deal-level field naming the entity, when the CRM carries one: neither CRM read here does (the Salesforce
--      Opportunity and the HubSpot deal have no entity/subsidiary field, so staging.deals has no such column);
--   2. else the golden customer's country (core.customers.country, ISO alpha-2) matched to an entity's `country`
--      in the legal-entities file (ref.legal_entities; the first in file order if two share a country);
--   3. else the group's default entity: the first in the legal-entities file.
-- books_system: the entity's books of record, the first `books` entry of its legal-entities entry
-- (ref.legal_entities.books_system): where S4 creates the deal's customer and invoice.
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
deals AS (
    SELECT d.*, x.golden_id AS golden_customer_id,
           coalesce(bc.legal_entity, (SELECT legal_entity FROM default_entity)) AS legal_entity
    FROM staging.deals AS d
    LEFT JOIN core.customer_xref AS x ON x.source_system = d.source_system AND x.source_id = d.customer_source_id
    LEFT JOIN core.customers AS c ON c.golden_id = x.golden_id
    LEFT JOIN by_country AS bc ON bc.country = c.country
)
SELECT deals.*, e.books_system
FROM deals
LEFT JOIN entity_order AS e ON e.legal_entity = deals.legal_entity
ORDER BY deals.source_system, deals.source_id
